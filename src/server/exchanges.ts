import type { Db } from '../store/db.js';
import { exchangeMany, type ExchangeOutcome, type ExchangeRequest } from '../store/sessions.js';
import type { WarnLog } from './request-log.js';

/**
 * Runners' exchanges, coalesced: while one database call is in flight, the exchanges that arrive wait and
 * then go together in the next call (one transaction, one commit, one completion statement and one claim
 * per group of runners serving the same types; sfw_exchange_many). A lone exchange goes at once, so an
 * idle system pays no wait; a busy one pays its database cost once per batch instead of once per runner.
 * A runner has at most one exchange in a call: a second one from the same runner waits for the next.
 */
export class ExchangeQueue {
  private pending: {
    req: ExchangeRequest;
    resolve: (o: ExchangeOutcome) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private inFlight = false;

  constructor(
    private readonly db: Db,
    private readonly maxBatch = 50,
    private readonly log?: WarnLog,
  ) {}

  run(req: ExchangeRequest): Promise<ExchangeOutcome> {
    return new Promise((resolve, reject) => {
      this.pending.push({ req, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.inFlight || this.pending.length === 0) return;
    const batch: typeof this.pending = [];
    const runners = new Set<string>();
    const rest: typeof this.pending = [];
    for (const p of this.pending) {
      if (batch.length < this.maxBatch && !runners.has(p.req.runnerId)) {
        runners.add(p.req.runnerId);
        batch.push(p);
      } else rest.push(p);
    }
    this.pending = rest;
    this.inFlight = true;
    void this.send(batch).finally(() => {
      this.inFlight = false;
      this.kick();
    });
  }

  private async send(batch: typeof this.pending): Promise<void> {
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
      this.log?.warn(
        { err: (err as Error).message, runners: batch.length },
        'exchange batch failed; one by one',
      );
      for (const p of batch) {
        try {
          const [o] = await exchangeMany(this.db, [p.req]);
          p.resolve(o!);
        } catch (e) {
          p.reject(e);
        }
      }
    }
  }
}
