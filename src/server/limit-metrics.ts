import type { Exposition } from './metrics.js';

/**
 * Per-key limit gauges. Only keys with a limit are labelled (their number is what operators set), so the
 * series stay few however many keys sessions carry.
 */
export function writeLimits(
  out: Exposition,
  keys: { key: string; running: number; waiting: number }[],
): void {
  out.family('sfw_limit_running', 'gauge', 'Sessions of a limited key running now, fleet-wide');
  for (const k of keys) out.sample('sfw_limit_running', { key: k.key }, k.running);
  out.family(
    'sfw_limit_waiting',
    'gauge',
    'Queued, due sessions of a limited key held back by its limit (concurrency or perMinute full)',
  );
  for (const k of keys) out.sample('sfw_limit_waiting', { key: k.key }, k.waiting);
}
