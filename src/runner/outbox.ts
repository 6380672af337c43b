import { lazyChild, type EventLog, type Logger } from '../core/log.js';
import {
  COMPLETE_BATCH_MAX,
  type CompleteBody,
  type CompleteItem,
  type CompleteOutcome,
} from '../protocol/schemas.js';
import { refusedResultBody } from './reports.js';
import { isRefusal, retryDelay } from './retry.js';
import type { RetryPolicy } from './types.js';

/**
 * The runner's one outbox of finished sessions. A report waits for its session's artifact uploads, then is
 * ready: the claim loop's next claim carries it (`complete` items of POST /v1/runners/:id/claim, one round
 * trip for the completions and the claim that refills their slots), or, when no claim will leave soon (one
 * is long-polling, the runner is draining), the fallback door POST /v1/runners/:id/complete takes it.
 * Either way the API answers one typed outcome per report, and each report keeps its own:
 * - accepted, lease-lost, not-found, conflict: settled, the session is no longer held;
 * - a failure of the request (network, 5xx, 408, 429): retried with backoff for as long as it takes;
 * - a refusal of the request (other 4xx): reports refused together are sent again alone; a report refused
 *   alone is replaced by an `error` outcome naming the refusal (an `error` refused too is dropped);
 * - abandon() (forced shutdown): what is not delivered settles as `abandoned` and is handed back.
 */

export type Delivery = CompleteOutcome['outcome'] | 'abandoned';

export interface Report {
  sessionId: string;
  body: CompleteBody;
  /** Artifact uploads of this session still in flight: its completion waits for them. */
  before?: Promise<unknown>;
}

export interface OutboxDeps {
  /** The fallback door (POST /v1/runners/:id/complete): reports no claim is about to carry. */
  send(items: CompleteItem[]): Promise<CompleteOutcome[]>;
  /**
   * Asked when a report becomes ready: true when the runner's next claim will carry it (the claim loop
   * is then woken to send it). The report waits up to carryMs for that claim, else windowMs.
   */
  claimWillCarry(): boolean;
  log: Logger;
  retry: RetryPolicy;
  /** How long to gather reports that finish together before the fallback door (default 2 ms). */
  windowMs?: number;
  /** How long a report waits for a claim that promised to carry it (default 50 ms). */
  carryMs?: number;
  maxItems?: number;
}

interface Entry {
  sessionId: string;
  body: CompleteBody;
  state: 'uploading' | 'ready' | 'sending' | 'retrying';
  /** Deliveries tried so far. */
  attempt: number;
  /** Sent in a request of its own: a request that carried it with others was refused. */
  alone: boolean;
  retryTimer: NodeJS.Timeout | undefined;
  log: EventLog;
  settle(delivery: Delivery): void;
  delivery: Promise<Delivery>;
}

export class Outbox {
  /** Undelivered reports by lease token (each attempt of a session is its own report), oldest first. */
  private readonly entries = new Map<string, Entry>();
  private flushTimer: NodeJS.Timeout | undefined;
  private abandoned = false;
  private readonly windowMs: number;
  private readonly carryMs: number;
  private readonly maxItems: number;

  constructor(private readonly deps: OutboxDeps) {
    this.windowMs = deps.windowMs ?? 2;
    this.carryMs = deps.carryMs ?? 50;
    this.maxItems = Math.min(deps.maxItems ?? COMPLETE_BATCH_MAX, COMPLETE_BATCH_MAX);
  }

  /** Reports not yet delivered. */
  get size(): number {
    return this.entries.size;
  }

  /** Reports the next claim would carry: their sessions' slots count as free for that claim. */
  get carryable(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.state === 'ready' && !e.alone) n++;
    return Math.min(n, this.maxItems);
  }

  /** Delivers the report; resolves with the API's outcome for it, or `abandoned`. */
  submit(report: Report): Promise<Delivery> {
    const key = report.body.leaseToken;
    const existing = this.entries.get(key);
    if (existing) return existing.delivery;
    let resolve!: (d: Delivery) => void;
    const entry: Entry = {
      sessionId: report.sessionId,
      body: report.body,
      state: 'uploading',
      attempt: 0,
      alone: false,
      retryTimer: undefined,
      log: lazyChild(this.deps.log, { sessionId: report.sessionId }),
      settle: (d) => {
        clearTimeout(entry.retryTimer);
        this.entries.delete(key);
        resolve(d);
      },
      delivery: new Promise<Delivery>((r) => (resolve = r)),
    };
    this.entries.set(key, entry);
    void Promise.resolve(report.before)
      .catch(() => undefined)
      .then(() => this.ready(entry));
    return entry.delivery;
  }

  /**
   * Lets one request carry the ready reports (the claim): `send` gets them as `complete` items, and the
   * reply's `completed` outcomes settle them; a failed request is the outbox's to retry. Answers how many
   * it carried, and the request's own reply.
   */
  carry<T extends { completed?: CompleteOutcome[] }>(
    send: (items: CompleteItem[]) => Promise<T>,
  ): { carried: number; reply: Promise<T> } {
    const batch = this.take();
    const reply = send(batch.map(itemOf));
    reply.then(
      (r) => this.answered(batch, r.completed ?? []),
      (err: unknown) => this.failed(batch, err, false),
    );
    return { carried: batch.length, reply };
  }

  /** Waits until every report is settled. */
  async drain(): Promise<void> {
    while (this.entries.size > 0) await Promise.allSettled([...this.entries.values()].map((e) => e.delivery));
  }

  /** Stops delivering (forced shutdown): every report not in a request now settles as `abandoned`. */
  abandon(): void {
    this.abandoned = true;
    clearTimeout(this.flushTimer);
    for (const e of [...this.entries.values()]) if (e.state !== 'sending') this.giveUp(e);
  }

  private ready(entry: Entry): void {
    if (this.entries.get(entry.body.leaseToken) !== entry) return;
    if (this.abandoned) return this.giveUp(entry);
    entry.state = 'ready';
    const carried = !entry.alone && this.deps.claimWillCarry();
    if (this.carryable >= this.maxItems) this.flush();
    else this.flushTimer ??= setTimeout(() => this.flush(), carried ? this.carryMs : this.windowMs);
  }

  /** Ready reports for one request: up to maxItems, one per session (outcomes are told apart by id). */
  private take(): Entry[] {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch: Entry[] = [];
    const ids = new Set<string>();
    let left = false;
    for (const e of this.entries.values()) {
      if (e.state !== 'ready' || e.alone) continue;
      if (batch.length >= this.maxItems || ids.has(e.sessionId)) {
        left = true;
        continue;
      }
      e.state = 'sending';
      ids.add(e.sessionId);
      batch.push(e);
    }
    if (left) this.flushTimer = setTimeout(() => this.flush(), this.windowMs);
    return batch;
  }

  /** The fallback door: the ready reports together, and each report that must go alone by itself. */
  private flush(): void {
    for (const e of [...this.entries.values()])
      if (e.state === 'ready' && e.alone) {
        e.state = 'sending';
        this.post([e]);
      }
    const batch = this.take();
    if (batch.length > 0) this.post(batch);
  }

  private post(batch: Entry[]): void {
    this.deps.send(batch.map(itemOf)).then(
      (outcomes) => this.answered(batch, outcomes),
      (err: unknown) => this.failed(batch, err, true),
    );
  }

  private answered(batch: Entry[], outcomes: CompleteOutcome[]): void {
    const byId = new Map(outcomes.map((o) => [o.id, o.outcome]));
    for (const e of batch) {
      // A report the answer does not name was not stored: never taken as accepted.
      const outcome = byId.get(e.sessionId) ?? 'lease-lost';
      if (outcome === 'accepted') {
        if (e.attempt > 0) e.log.info({ attempts: e.attempt + 1 }, 'result delivered after retries');
      } else if (outcome === 'conflict') {
        e.log.warn(
          { status: e.body.status },
          'result refused: this lease already completed the session differently; dropped',
        );
      } else {
        e.log.warn(
          { status: e.body.status, outcome },
          'result refused: the lease was lost (session recovered or finished elsewhere); dropped',
        );
      }
      e.settle(outcome);
    }
  }

  /** A request failed as a whole: the claim that carried `batch`, or the fallback door's request. */
  private failed(batch: Entry[], err: unknown, fallback: boolean): void {
    const msg = (err as Error).message;
    for (const e of batch) {
      e.attempt++;
      if (!isRefusal(err)) this.retry(e, msg);
      else if (!fallback || batch.length > 1) {
        // The refusal may be any one report's, or the claim's own: each goes again, alone.
        e.alone = true;
        this.ready(e);
      } else if (e.body.status !== 'error') {
        e.log.error({ err: msg }, 'result refused by the API; reporting the session as error');
        e.body = refusedResultBody(e.body, err as Error);
        this.ready(e);
      } else {
        e.log.error({ err: msg }, 'error report refused by the API; dropped');
        e.settle('abandoned');
      }
    }
  }

  private retry(e: Entry, msg: string): void {
    if (this.abandoned) return this.giveUp(e);
    const delay = retryDelay(e.attempt - 1, this.deps.retry);
    e.log.warn({ err: msg, attempt: e.attempt, retryInMs: delay }, 'could not deliver result; retrying');
    e.state = 'retrying';
    e.retryTimer = setTimeout(() => this.ready(e), delay);
  }

  private giveUp(e: Entry): void {
    e.log.warn({ status: e.body.status }, 'result not delivered: runner stopped before the API accepted it');
    e.settle('abandoned');
  }
}

function itemOf(e: Entry): CompleteItem {
  return { id: e.sessionId, ...e.body };
}
