import { SfwError } from '../core/errors.js';
import { backoff } from '../core/time.js';
import type { RetryPolicy } from './types.js';

/** How the runner reads a failed API call (retry it, or not), and how long it waits before the next try. */

/** HTTP status of an answer, or undefined for a network failure. */
export function httpStatusOf(err: unknown): number | undefined {
  if (err instanceof SfwError && err.code !== 'UNAVAILABLE') return err.status;
  return undefined;
}

/** The request itself was refused (4xx other than 408 and 429): sent again as it is, it fails again. */
export function isRefusal(err: unknown): boolean {
  const s = httpStatusOf(err);
  return s !== undefined && s >= 400 && s < 500 && s !== 408 && s !== 429;
}

/** Answers that say this attempt no longer holds the session (an artifact under a lost lease). */
export function isLeaseGone(err: unknown): boolean {
  const s = httpStatusOf(err);
  return s === 409 || s === 404;
}

/** Refusals that no retry will change, other than the session no longer being ours. */
export function isPermanentRefusal(err: unknown): boolean {
  return isRefusal(err) && !isLeaseGone(err);
}

/** The pause before retry number `attempt` (from 0): exponential with jitter, capped by the policy. */
export function retryDelay(attempt: number, policy: RetryPolicy): number {
  return backoff(Math.min(attempt, 16), policy.backoffMs, policy.maxBackoffMs);
}
