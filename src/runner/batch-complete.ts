import { ApiError, NetworkError } from '../sdk/client.js';
import type {
  CompleteBatchBody,
  CompleteBatchReply,
  CompleteBody,
  CompleteItem,
  CompleteOutcome,
} from '../protocol/schemas.js';

interface Waiting {
  id: string;
  body: CompleteBody;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface CompletionBatcherDeps {
  /** One request for several completions. */
  completeMany(items: CompleteBatchBody['items']): Promise<CompleteBatchReply>;
  /** One completion, used when the API refuses a whole batch (so one bad item cannot sink the others). */
  complete(id: string, body: CompleteBody): Promise<unknown>;
  /**
   * Asked when a completion is queued: true when the runner's next claim will carry it (see take(); the
   * runner wakes its claim loop to send it). The completion then waits for that claim instead of a
   * request of its own, up to carryMs.
   */
  carrier?: () => boolean;
  /** How long to gather completions that finish together (default 2 ms). */
  windowMs?: number;
  /** How long a completion waits for a carrying claim before it is sent on its own (default 50 ms). */
  carryMs?: number;
  maxItems?: number;
}

/** Completions taken to travel with a claim: settle them with the claim's answer or its failure. */
export interface CarriedCompletions {
  items: CompleteItem[];
  settle(outcomes: CompleteOutcome[]): void;
  fail(err: unknown): void;
}

/**
 * Gathers completions that arrive within a few milliseconds into one request and one commit, or hands them
 * to the runner's next claim (one round trip for both). Each caller sees its own outcome, as with a single
 * completion: resolved when accepted, an ApiError 409/404 when its lease is gone, the network error when
 * the request failed (the report queue retries).
 */
export class CompletionBatcher {
  private queue: Waiting[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly windowMs: number;
  private readonly carryMs: number;
  private readonly maxItems: number;

  constructor(private readonly deps: CompletionBatcherDeps) {
    this.windowMs = deps.windowMs ?? 2;
    this.carryMs = deps.carryMs ?? 50;
    this.maxItems = deps.maxItems ?? 100;
  }

  /** Completions waiting to be sent. */
  get pending(): number {
    return this.queue.length;
  }

  complete(id: string, body: CompleteBody): Promise<void> {
    // Two reports about one session never share a batch (their answers are told apart by id).
    if (this.queue.some((w) => w.id === id)) this.flush();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ id, body, resolve, reject });
      const carried = this.deps.carrier?.() === true;
      if (this.queue.length >= this.maxItems) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), carried ? this.carryMs : this.windowMs);
    });
  }

  /** Takes every waiting completion (at most maxItems), for a claim to carry. */
  take(): CarriedCompletions | undefined {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.queue.splice(0, this.maxItems);
    if (batch.length === 0) return undefined;
    if (this.queue.length > 0) this.timer = setTimeout(() => this.flush(), this.windowMs);
    return {
      items: batch.map((w) => ({ id: w.id, ...w.body })),
      settle: (outcomes) => {
        const byId = new Map(outcomes.map((i) => [i.id, i.outcome]));
        for (const w of batch) {
          const outcome = byId.get(w.id);
          if (outcome === 'accepted') w.resolve();
          else if (outcome === 'not-found')
            w.reject(new ApiError(404, 'NOT_FOUND', `session ${w.id} not found`));
          else if (outcome === 'conflict')
            w.reject(new ApiError(409, 'CONFLICT', `session ${w.id} was already completed differently`));
          else w.reject(new ApiError(409, 'LEASE_LOST', `lease lost for session ${w.id}`));
        }
      },
      fail: (err) => {
        if (
          err instanceof NetworkError ||
          !(err instanceof ApiError) ||
          [429, 502, 503, 504].includes(err.httpStatus)
        ) {
          for (const w of batch) w.reject(err);
          return;
        }
        // The API refused the batch as a whole (or does not know the batch endpoint): one by one instead.
        for (const w of batch) this.deps.complete(w.id, w.body).then(() => w.resolve(), w.reject);
      },
    };
  }

  private flush(): void {
    const carried = this.take();
    if (!carried) return;
    this.deps.completeMany(carried.items).then(
      (reply) => carried.settle(reply.items),
      (err: unknown) => carried.fail(err),
    );
  }
}
