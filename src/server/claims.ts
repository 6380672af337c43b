import type { Db } from '../store/db.js';
import type { WarnLog } from './request-log.js';
import type { Notifier } from '../store/notify.js';
import { recordRunnersSeen, type RunnerSeen } from '../store/runners.js';
import { claimWaiting, type WaitingClaim } from '../store/sessions.js';

/**
 * Waiting claims, multiplexed. A runner's long-poll waits here in memory, holding no database connection;
 * one pass per wake (a NOTIFY of new work, a scheduled session coming due, the fallback poll) hands ready
 * sessions to the waiters that can run them, longest waiting first, in one database call for many waiters.
 * Between wakes nothing is asked of Postgres, however many runners wait: the types known to have nothing
 * ready are remembered until the next notification. The polls still count as liveness: the runners seen
 * are written to runner_health once per interval, in one statement.
 *
 * Claims stay atomic in the database (each runner's claim takes its lock and SKIP LOCKED rows), so several
 * API replicas, each with its own waiters, never hand out a session twice.
 */

export interface ClaimHubOptions {
  db: Db;
  notifier: Notifier | undefined;
  leaseMs: number;
  /** How often waiters are checked against the database with no notification (lost NOTIFY, poll-only). */
  pollMs: () => number;
  /** How often the runners seen polling are written to runner_health (default 1000 ms). */
  livenessFlushMs?: number;
  /** Waiters per database call (default 200). */
  batchSize?: number;
  log?: WarnLog | undefined;
}

export interface WaitRequest extends WaitingClaim, RunnerSeen {}

interface Waiter {
  req: WaitRequest;
  /** '[]' when nothing came: the JSON array of ClaimedSession as the database built it. */
  settle: (claimedJson: string) => void;
  inPass: boolean;
  expired: boolean;
}

const EMPTY = '[]';

export class ClaimHub {
  /** In arrival order: a Map iterates in insertion order, so the longest waiting come first. */
  private readonly waiters = new Set<Waiter>();
  private readonly emptyTypes = new Set<string>();
  private readonly seen = new Map<string, RunnerSeen>();
  private passing: Promise<void> | null = null;
  private dirty = false;
  private closed = false;
  private dueTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private readonly flushTimer: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;
  private readonly onWork = () => this.wake();
  /** Database calls made by passes (for tests and metrics). */
  passes = 0;

  constructor(private readonly o: ClaimHubOptions) {
    o.notifier?.on('sessions', this.onWork);
    const poll = () => {
      if (this.closed) return;
      if (this.waiters.size > 0) this.wake();
      this.pollTimer = setTimeout(poll, o.pollMs());
      this.pollTimer.unref();
    };
    this.pollTimer = setTimeout(poll, o.pollMs());
    this.pollTimer.unref();
    this.flushTimer = setInterval(() => void this.flushSeen(), o.livenessFlushMs ?? 1000);
    this.flushTimer.unref();
  }

  get waiting(): number {
    return this.waiters.size;
  }

  /** Records a poll for liveness (written with the next flush). */
  sawRunner(r: RunnerSeen): void {
    this.seen.set(r.runnerId, { ...this.seen.get(r.runnerId), ...definedOnly(r), at: new Date() });
  }

  /** A runner said it stopped: its polls seen before are not written after its final status. */
  forgetRunner(runnerId: string): void {
    this.seen.delete(runnerId);
  }

  /**
   * Waits up to `ms` for sessions for this runner. Resolves with the claimed sessions' JSON array text
   * ('[]' when none came in time or the request went away before a claim was made for it).
   */
  wait(req: WaitRequest, ms: number, signal: AbortSignal): Promise<string> {
    this.sawRunner(req);
    if (this.closed || signal.aborted || ms <= 0) return Promise.resolve(EMPTY);
    return new Promise<string>((resolve) => {
      const w: Waiter = {
        req,
        inPass: false,
        expired: false,
        settle: (json) => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          this.waiters.delete(w);
          resolve(json);
        },
      };
      // A waiter inside a pass is settled by the pass: a claim made for it must reach the route, which
      // hands it back when the runner is gone.
      const giveUp = () => {
        if (w.inPass) w.expired = true;
        else w.settle(EMPTY);
      };
      const onAbort = giveUp;
      const timer = setTimeout(giveUp, ms);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(w);
      if (!req.types.every((t) => this.emptyTypes.has(t))) this.schedulePass();
    });
  }

  /** New work may be there: forget what was known empty and look again. */
  wake(): void {
    this.emptyTypes.clear();
    this.schedulePass();
  }

  private schedulePass(): void {
    this.dirty = true;
    if (this.passing || this.closed) return;
    // One pass for a burst of arrivals or notifications in the same turn of the event loop.
    this.passing = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.passLoop())
      .finally(() => {
        this.passing = null;
        if (this.dirty && !this.closed) this.schedulePass();
      });
  }

  private async passLoop(): Promise<void> {
    while (this.dirty && !this.closed) {
      this.dirty = false;
      const batch = this.candidates();
      if (batch.length === 0) return;
      for (const w of batch) w.inPass = true;
      let claims: Map<string, string> | undefined;
      try {
        const out = await claimWaiting(
          this.o.db,
          batch.map((w) => w.req),
          this.o.leaseMs,
        );
        claims = out.claims;
        const asked = new Set(batch.flatMap((w) => w.req.types));
        const empty = new Set(out.emptyTypes);
        for (const t of asked) {
          if (empty.has(t)) this.emptyTypes.add(t);
          else this.emptyTypes.delete(t);
        }
        this.armDueTimer(out.nextRunAt);
        // Everyone asked got sessions, or some were not asked: there may be more to hand out.
        if (claims.size === batch.length || this.candidates().length > 0) this.dirty = true;
      } catch (err) {
        this.o.log?.warn(
          { err: (err as Error).message },
          'claim pass failed; waiters retry at the next poll',
        );
      } finally {
        for (const w of batch) {
          w.inPass = false;
          const json = claims?.get(w.req.runnerId);
          if (json !== undefined) w.settle(json);
          else if (w.expired) w.settle(EMPTY);
        }
      }
      if (!claims) return;
    }
  }

  /** Waiters that could be served now, longest waiting first, one per runner. */
  private candidates(): Waiter[] {
    const out: Waiter[] = [];
    const runners = new Set<string>();
    const max = this.o.batchSize ?? 200;
    for (const w of this.waiters) {
      if (w.inPass || w.expired || runners.has(w.req.runnerId)) continue;
      if (w.req.types.every((t) => this.emptyTypes.has(t))) continue;
      runners.add(w.req.runnerId);
      out.push(w);
      if (out.length >= max) break;
    }
    return out;
  }

  private armDueTimer(at: Date | null): void {
    if (this.dueTimer) clearTimeout(this.dueTimer);
    this.dueTimer = null;
    if (!at || this.closed) return;
    const ms = Math.max(0, at.getTime() - Date.now());
    if (ms > this.o.pollMs()) return; // the fallback poll comes first
    this.dueTimer = setTimeout(() => {
      this.dueTimer = null;
      if (this.waiters.size > 0) this.wake();
    }, ms);
    this.dueTimer.unref();
  }

  private flushSeen(): Promise<void> {
    if (this.flushing || this.seen.size === 0) return this.flushing ?? Promise.resolve();
    const batch = [...this.seen.values()];
    this.seen.clear();
    this.flushing = recordRunnersSeen(this.o.db, batch)
      .catch((err: unknown) => {
        // Kept for the next flush, unless a newer poll of the same runner replaced it.
        for (const r of batch) if (!this.seen.has(r.runnerId)) this.seen.set(r.runnerId, r);
        this.o.log?.warn({ err: (err as Error).message }, 'runner liveness not written; will retry');
      })
      .finally(() => {
        this.flushing = null;
      });
    return this.flushing;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.o.notifier?.off('sessions', this.onWork);
    if (this.pollTimer) clearTimeout(this.pollTimer);
    clearInterval(this.flushTimer);
    if (this.dueTimer) clearTimeout(this.dueTimer);
    await this.passing;
    for (const w of [...this.waiters]) w.settle(EMPTY);
    await this.flushSeen();
  }
}

function definedOnly(r: RunnerSeen): RunnerSeen {
  return {
    runnerId: r.runnerId,
    ...(r.maxConcurrency === undefined ? {} : { maxConcurrency: r.maxConcurrency }),
    ...(r.hostname === undefined ? {} : { hostname: r.hostname }),
    ...(r.version === undefined ? {} : { version: r.version }),
    ...(r.startedAt === undefined ? {} : { startedAt: r.startedAt }),
  };
}
