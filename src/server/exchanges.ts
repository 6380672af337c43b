import type { Db } from '../store/db.js';
import { exchangeMany, type ExchangeOutcome, type ExchangeRequest } from '../store/sessions.js';
import type { WarnLog } from './request-log.js';

/**
 * Runners' exchanges, coalesced: while two database calls are in flight, the exchanges that arrive wait
 * and then go together in the next call (one transaction, one commit, one completion statement and one claim
 * per group of runners serving the same types; sfw_exchange_many). A lone exchange goes at once, so an
 * idle system pays no wait. When several runners are busy, a batch smaller than their number waits up to
 * `lingerMs` for the others' next exchanges (they come back within a millisecond or two of their answer),
 * so busy runners share calls instead of taking turns. A runner has at most one exchange in a call.
 */
export interface ExchangeQueueOptions {
  /** Runners per call (default 50). */
  maxBatch?: number;
  /** Calls in flight at once (default 2). */
  maxInFlight?: number;
  /** Longest wait of a batch for more busy runners' exchanges (default 2 ms; 0: never wait). */
  lingerMs?: number;
  log?: WarnLog | undefined;
}

interface Pending {
  req: ExchangeRequest;
  at: number;
  resolve: (o: ExchangeOutcome) => void;
  reject: (e: unknown) => void;
}

/** A runner counts as busy while its exchanges come at least this often. */
const BUSY_WITHIN_MS = 50;

export class ExchangeQueue {
  private pending: Pending[] = [];
  private inFlight = 0;
  /** Runners with an exchange in a call now: they cannot join the next batch. */
  private readonly calling = new Set<string>();
  private readonly recent = new Map<string, number>();
  private sweptAt = 0;
  private lingering: NodeJS.Timeout | null = null;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly lingerMs: number;

  constructor(
    private readonly db: Db,
    private readonly o: ExchangeQueueOptions = {},
  ) {
    this.maxBatch = o.maxBatch ?? 50;
    this.maxInFlight = o.maxInFlight ?? 2;
    this.lingerMs = o.lingerMs ?? 2;
  }

  run(req: ExchangeRequest): Promise<ExchangeOutcome> {
    return new Promise((resolve, reject) => {
      const now = performance.now();
      this.recent.set(req.runnerId, now);
      this.pending.push({ req, at: now, resolve, reject });
      this.kick();
    });
  }

  /** Runners whose exchanges came within about BUSY_WITHIN_MS (the map is swept once per that period). */
  private busyRunners(now: number): number {
    if (now - this.sweptAt > BUSY_WITHIN_MS) {
      for (const [id, at] of this.recent) if (now - at > BUSY_WITHIN_MS) this.recent.delete(id);
      this.sweptAt = now;
    }
    return this.recent.size;
  }

  private kick(): void {
    if (this.inFlight >= this.maxInFlight || this.pending.length === 0 || this.lingering) return;
    const now = performance.now();
    const oldest = this.pending[0]!.at;
    if (
      this.lingerMs > 0 &&
      this.pending.length < Math.min(this.busyRunners(now) - this.calling.size, this.maxBatch) &&
      now - oldest < this.lingerMs
    ) {
      this.lingering = setTimeout(
        () => {
          this.lingering = null;
          this.flush();
        },
        this.lingerMs - (now - oldest),
      );
      return;
    }
    this.flush();
  }

  private flush(): void {
    if (this.inFlight >= this.maxInFlight || this.pending.length === 0) return;
    const batch: Pending[] = [];
    const runners = new Set<string>();
    const rest: Pending[] = [];
    for (const p of this.pending) {
      if (batch.length < this.maxBatch && !runners.has(p.req.runnerId)) {
        runners.add(p.req.runnerId);
        batch.push(p);
      } else rest.push(p);
    }
    this.pending = rest;
    this.inFlight++;
    for (const id of runners) this.calling.add(id);
    void this.send(batch).finally(() => {
      this.inFlight--;
      for (const id of runners) this.calling.delete(id);
      this.kick();
    });
  }

  private async send(batch: Pending[]): Promise<void> {
    try {
      const out = await exchangeMany(
        this.db,
        batch.map((p) => p.req),
      );
      batch.forEach((p, i) => p.resolve(out[i]!));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // One request's failure must not fail the others': each on its own.
      this.o.log?.warn(
        { err: (err as Error).message, runners: batch.length },
        'exchange batch failed; one by one',
      );
      for (const p of batch) {
        try {
          const [one] = await exchangeMany(this.db, [p.req]);
          p.resolve(one!);
        } catch (e) {
          p.reject(e);
        }
      }
    }
  }

  close(): void {
    if (this.lingering) clearTimeout(this.lingering);
    this.lingering = null;
    this.flush();
  }
}
