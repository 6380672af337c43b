import type { LimitGauge } from '../store/limits.js';
import type { Exposition } from './metrics.js';

/**
 * Per-key limit gauges. Only keys with a row in `limits` are labelled (a limit an operator set, or a
 * backoff a site asked for, dropped once over), so the series stay few however many keys sessions carry.
 */
export function writeLimits(out: Exposition, keys: LimitGauge[]): void {
  out.family('sfw_limit_running', 'gauge', 'Sessions of a limited key running now, fleet-wide');
  for (const k of keys) out.sample('sfw_limit_running', { key: k.key }, k.running);
  out.family(
    'sfw_limit_waiting',
    'gauge',
    'Queued, due sessions of a limited key held back by its limit (concurrency or perMinute full, or a backoff)',
  );
  for (const k of keys) out.sample('sfw_limit_waiting', { key: k.key }, k.waiting);
  out.family(
    'sfw_limit_backoff_seconds',
    'gauge',
    "Seconds left before a key's sessions are claimed again: its site answered 429/503 with Retry-After",
  );
  for (const k of keys) out.sample('sfw_limit_backoff_seconds', { key: k.key }, k.backoff_s);
}
