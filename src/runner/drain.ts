import type { Logger } from '../core/log.js';
import { sleep } from '../core/time.js';
import type { Executions } from './executions.js';
import type { Outbox } from './outbox.js';
import { retryDelay } from './retry.js';
import type { RetryPolicy, RunnerApi, SessionRef } from './types.js';

/**
 * How a stopping runner ends: the claim in flight comes back and what it brings runs too; in-flight
 * sessions finish and their reports are delivered, up to the shutdown timeout. On the timeout or a forced
 * stop, what still runs is aborted and every session still held is handed back to the queue with the
 * final status.
 */

export interface DrainDeps {
  executions: Executions;
  outbox: Outbox;
  log: Logger;
  shutdownTimeoutMs: number;
  /** How long aborted sessions get to settle before they are handed back. */
  abortGraceMs: number;
  /** Aborted by a forced stop: waiting ends at once. */
  forced: AbortSignal;
}

/** True when `work` settles within `ms`; false when the time passes or `cut` aborts first. */
async function within(work: Promise<unknown>, ms: number, cut?: AbortSignal): Promise<boolean> {
  const timer = new AbortController();
  const onCut = () => timer.abort();
  if (cut?.aborted) timer.abort();
  else cut?.addEventListener('abort', onCut, { once: true });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      sleep(ms, timer.signal).then(() => false),
    ]);
  } finally {
    timer.abort();
    cut?.removeEventListener('abort', onCut);
  }
}

/** Sessions executing finish and every report is delivered (or settled otherwise). */
async function finishAll({ executions, outbox }: DrainDeps): Promise<void> {
  while (executions.runningCount > 0 || outbox.size > 0) {
    await executions.settled();
    await outbox.drain();
  }
}

/**
 * Drains after claims have stopped (`claiming` settles when the claim loop has ended). Answers the
 * sessions to hand back: none when everything finished in time.
 */
export async function drain(deps: DrainDeps, claiming: Promise<unknown>): Promise<SessionRef[]> {
  const { executions, outbox, log } = deps;
  // A claim in flight comes back at most after its long-poll.
  await within(claiming, deps.shutdownTimeoutMs, deps.forced);
  if (await within(finishAll(deps), deps.shutdownTimeoutMs, deps.forced)) return [];
  log.warn(
    { inFlight: executions.runningCount, forced: deps.forced.aborted },
    'aborting in-flight sessions and handing them back to the queue',
  );
  executions.abortAll();
  await within(executions.settled(), deps.abortGraceMs);
  outbox.abandon();
  return executions.heldRefs();
}

export interface StopDeps {
  runnerId: string;
  client: Pick<RunnerApi, 'stopRunner'>;
  executions: Executions;
  log: Logger;
  retry: RetryPolicy;
}

/** The final status to the API (`stopped`), handing back `requeue`; a few retries. */
export async function tellStopped(deps: StopDeps, requeue: SessionRef[]): Promise<boolean> {
  const { log } = deps;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const { requeued } = await deps.client.stopRunner(deps.runnerId, requeue.length ? { requeue } : {});
      if (requeue.length > 0) log.info({ requeued }, 'in-flight sessions handed back to the queue');
      deps.executions.handedBack(requeue);
      return true;
    } catch (err) {
      log.warn({ err: (err as Error).message, attempt: attempt + 1 }, 'could not report the final status');
      await sleep(retryDelay(attempt, { backoffMs: deps.retry.backoffMs, maxBackoffMs: 2000 }));
    }
  }
  if (requeue.length > 0)
    log.error(
      { sessions: requeue.map((r) => r.id) },
      'API unreachable at shutdown: sessions still held will be recovered when their leases lapse',
    );
  else log.error('API unreachable at shutdown: final status not reported');
  return false;
}
