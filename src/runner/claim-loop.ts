import type { Logger } from '../core/log.js';
import { sleep } from '../core/time.js';
import type { ClaimBody, ClaimedSession } from '../protocol/schemas.js';
import type { Executions } from './executions.js';
import type { Outbox } from './outbox.js';
import { httpStatusOf, isPermanentRefusal, retryDelay } from './retry.js';
import type { RetryPolicy, RunnerApi } from './types.js';

/**
 * The claim loop: claims up to the runner's free slots by long-poll and starts what it gets. Each claim
 * carries the outbox's ready reports, whose slots count as free: a busy runner reports and refills in one
 * round trip. While it waits for slots to free up it is woken by a session ending or a report becoming
 * ready; a failed claim is retried with backoff.
 */

/** How long a busy runner waits for more free slots before claiming (batching short sessions). */
const CLAIM_BATCH_WAIT_MS = 5;

export interface ClaimLoopDeps {
  runnerId: string;
  client: Pick<RunnerApi, 'claim'>;
  log: Logger;
  outbox: Outbox;
  executions: Executions;
  retry: RetryPolicy;
  /** Claims go on while this holds (the runner is not stopping). */
  running(): boolean;
  /** The runner's ceiling now, after memory-aware admission. */
  admit(): number;
  pollIntervalMs(): number;
  /** What every claim says about the runner besides its slots (runner_health fields, the types served). */
  registration(): Omit<ClaimBody, 'slots' | 'waitMs' | 'complete'>;
  /** Aborted when the runner stops: ends a failed claim's backoff. */
  stopped: AbortSignal;
  /** Aborted by a forced stop: cuts a claim in flight short. */
  forced: AbortSignal;
}

export class ClaimLoop {
  private requests = 0;
  /** Waiting for free slots (not in a claim request): the next claim leaves as soon as it is woken. */
  private idleNow = false;
  private wakeScheduled = false;
  private wakeResolve: (() => void) | undefined;

  constructor(private readonly deps: ClaimLoopDeps) {}

  /** Claim requests made so far (each may return 0..slots sessions). */
  get claimRequests(): number {
    return this.requests;
  }

  async run(): Promise<void> {
    const { outbox, executions, log } = this.deps;
    let failures = 0;
    while (this.deps.running()) {
      const effective = this.deps.admit();
      const free = () => effective - executions.heldCount + outbox.carryable;
      let slots = free();
      if (slots <= 0 && outbox.carryable === 0) {
        await this.idle(1000);
        continue;
      }
      // A busy runner with few free slots waits a moment for more to free up, so short sessions are
      // claimed (and reported) in batches, one round trip for several, instead of one per finished session.
      const until = Date.now() + CLAIM_BATCH_WAIT_MS;
      while (
        this.deps.running() &&
        executions.heldCount > outbox.carryable &&
        slots * 2 < effective &&
        Date.now() < until
      ) {
        await this.idle(until - Date.now());
        slots = free();
      }
      if (!this.deps.running()) break;
      if (slots <= 0 && outbox.carryable === 0) continue;
      const waitMs = Math.min(60_000, this.deps.pollIntervalMs());
      const t0 = Date.now();
      this.requests++;
      const { carried, reply } = outbox.carry((complete) =>
        this.deps.client.claim(
          this.deps.runnerId,
          {
            ...this.deps.registration(),
            slots: Math.max(0, slots),
            waitMs,
            ...(complete.length > 0 ? { complete } : {}),
          },
          // Not aborted by a graceful stop: a claim the API already answered must reach us, or its
          // sessions would wait out their lease. Only a forced stop cuts it short.
          this.deps.forced,
        ),
      );
      let sessions: ClaimedSession[];
      try {
        sessions = (await reply).sessions;
        if (failures > 0) log.info({ failures }, 'API reachable again; claiming');
        failures = 0;
      } catch (err) {
        if (!this.deps.running()) break;
        // A report the API refused (too large, malformed) sank the claim: the outbox sends the reports
        // alone (and deals with the refusal), and the claim is asked again at once.
        const status = httpStatusOf(err);
        if (carried > 0 && (status === 400 || status === 413)) continue;
        const delay = retryDelay(failures, this.deps.retry);
        failures++;
        const msg = (err as Error).message;
        if (isPermanentRefusal(err))
          log.error({ err: msg, retryInMs: delay }, 'claim refused by the API (check RUNNER_TOKEN)');
        else log.warn({ err: msg, retryInMs: delay, failures }, 'claim failed; retrying');
        await sleep(delay, this.deps.stopped);
        continue;
      }
      for (const s of sessions) executions.start(s);
      // The long-poll waited server-side; poll again at once. Guard against a server that answers empty
      // without waiting, so an idle runner never spins. (A claim that carried reports is answered at once
      // by design.)
      const elapsed = Date.now() - t0;
      if (sessions.length === 0 && carried === 0 && elapsed < waitMs / 2) await this.idle(waitMs - elapsed);
    }
  }

  /**
   * Asked by the outbox when a report becomes ready: when the loop is waiting for free slots, it is woken
   * and its next claim carries the report (true); a claim already long-polling cannot (false).
   */
  willCarry(): boolean {
    if (!this.deps.running() || !this.idleNow) return false;
    this.wakeSoon();
    return true;
  }

  wake(): void {
    const r = this.wakeResolve;
    this.wakeResolve = undefined;
    r?.();
  }

  /**
   * Wakes the loop once after the current burst: sessions of one claim finish and are released together,
   * and the loop should look at free slots and ready reports once, not once per session.
   */
  wakeSoon(): void {
    if (this.wakeScheduled) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      this.wake();
    });
  }

  /** Waits for a wake (a slot freed, a report ready) or `ms`. */
  private async idle(ms: number): Promise<void> {
    this.idleNow = true;
    try {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, ms);
        const prev = this.wakeResolve;
        this.wakeResolve = done;
        function done() {
          clearTimeout(t);
          prev?.();
          resolve();
        }
      });
    } finally {
      this.idleNow = false;
    }
  }
}
