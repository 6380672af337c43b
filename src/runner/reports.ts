import { lazyChild, type Logger } from '../core/log.js';
import { SfwError } from '../core/errors.js';
import { backoff, sleep } from '../sdk/client.js';
import type { CompleteBody } from '../protocol/schemas.js';
import { storableCompletion } from '../protocol/text.js';

/**
 * Delivery of finished results. A result is kept until the API accepts it or answers that the lease is
 * gone (409, 404): transient failures (network, 5xx, 429) are retried with backoff and jitter for as
 * long as it takes, so a result is never dropped because the API was briefly away. A result the API
 * refuses as malformed (400, 413) is replaced by an `error` outcome naming the refusal, so the session
 * still ends.
 */

export interface Report {
  sessionId: string;
  body: CompleteBody;
  /** Artifact uploads of this session still in flight: completion waits for them. */
  before?: Promise<unknown>;
}

export type ReportOutcome = 'accepted' | 'lease-lost' | 'abandoned';

/**
 * A finished session's completion as the API can store it (src/protocol/text.ts): the error message
 * without terminal colour codes and within bounds, and no text Postgres refuses (NUL, half of a UTF-16
 * pair: replaced with U+FFFD, counted in `replaced`), so a result is never lost over a few characters.
 */
export function completionBody(
  leaseToken: string,
  outcome: Pick<CompleteBody, 'status' | 'result' | 'errorMessage'>,
): { body: CompleteBody; replaced: number } {
  const { completion, replaced } = storableCompletion({
    leaseToken,
    status: outcome.status,
    ...(outcome.result === undefined ? {} : { result: outcome.result }),
    ...(outcome.errorMessage === undefined ? {} : { errorMessage: outcome.errorMessage }),
  } satisfies CompleteBody);
  return { body: completion, replaced };
}

export interface ReportQueueDeps {
  complete(id: string, body: CompleteBody): Promise<unknown>;
  log: Logger;
  /** First retry delay (doubles, with jitter, up to maxBackoffMs). */
  backoffMs?: number;
  maxBackoffMs?: number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** HTTP status of an answer, or undefined for a network failure. */
export function httpStatusOf(err: unknown): number | undefined {
  if (err instanceof SfwError && err.code !== 'UNAVAILABLE') return err.status;
  return undefined;
}

/** Statuses that say the session is no longer ours: drop the result. */
export function isLeaseGone(err: unknown): boolean {
  const s = httpStatusOf(err);
  return s === 409 || s === 404;
}

/** Refusals that no retry will change (the request itself is wrong). */
export function isPermanentRefusal(err: unknown): boolean {
  const s = httpStatusOf(err);
  return s !== undefined && s >= 400 && s < 500 && s !== 408 && s !== 429 && !isLeaseGone(err);
}

export class ReportQueue {
  /** Deliveries in flight by lease token. */
  private readonly pending = new Map<string, Promise<ReportOutcome>>();
  private readonly stopper = new AbortController();
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  constructor(private readonly deps: ReportQueueDeps) {
    this.backoffMs = deps.backoffMs ?? 200;
    this.maxBackoffMs = deps.maxBackoffMs ?? 10_000;
    this.sleep = deps.sleep ?? sleep;
  }

  /** Results not yet delivered. */
  get size(): number {
    return this.pending.size;
  }

  /** A report of this attempt (lease) is pending. */
  has(leaseToken: string): boolean {
    return this.pending.has(leaseToken);
  }

  /** Delivers the report; resolves once it is accepted, refused for a lost lease, or the queue is abandoned. */
  submit(report: Report): Promise<ReportOutcome> {
    // Keyed by lease: each attempt of a session is its own report.
    const key = report.body.leaseToken;
    const existing = this.pending.get(key);
    if (existing) return existing;
    const p = this.deliver(report).finally(() => this.pending.delete(key));
    this.pending.set(key, p);
    return p;
  }

  /** Waits until every pending report is settled. */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending.values()]);
  }

  /** Stops retrying (forced shutdown): pending reports resolve as `abandoned`. */
  abandon(): void {
    this.stopper.abort();
  }

  private async deliver(report: Report): Promise<ReportOutcome> {
    const log = lazyChild(this.deps.log, { sessionId: report.sessionId });
    if (report.before) await report.before.catch(() => undefined);
    let body = report.body;
    for (let attempt = 0; ; attempt++) {
      if (this.stopper.signal.aborted) {
        log.warn({ status: body.status }, 'result not delivered: runner stopped before the API accepted it');
        return 'abandoned';
      }
      try {
        await this.deps.complete(report.sessionId, body);
        if (attempt > 0) log.info({ attempts: attempt + 1 }, 'result delivered after retries');
        return 'accepted';
      } catch (err) {
        if (isLeaseGone(err)) {
          log.warn(
            { status: body.status, err: (err as Error).message },
            'result refused: the lease was lost (session recovered or finished elsewhere); dropped',
          );
          return 'lease-lost';
        }
        if (isPermanentRefusal(err) && body.status !== 'error') {
          log.error(
            { err: (err as Error).message },
            'result refused by the API; reporting the session as error',
          );
          body = {
            leaseToken: body.leaseToken,
            status: 'error',
            errorMessage: `The API refused the session's result: ${(err as Error).message}`.slice(0, 4000),
          };
          continue;
        }
        if (isPermanentRefusal(err)) {
          log.error({ err: (err as Error).message }, 'error report refused by the API; dropped');
          return 'abandoned';
        }
        const delay = backoff(Math.min(attempt, 16), this.backoffMs, this.maxBackoffMs);
        log.warn(
          { err: (err as Error).message, attempt: attempt + 1, retryInMs: delay },
          'could not deliver result; retrying',
        );
        await this.sleep(delay, this.stopper.signal);
      }
    }
  }
}
