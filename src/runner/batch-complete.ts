import { ApiError, NetworkError } from '../sdk/client.js';
import type { CompleteBatchBody, CompleteBatchReply, CompleteBody } from '../protocol/schemas.js';

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
  /** How long to gather completions that finish together (default 2 ms). */
  windowMs?: number;
  maxItems?: number;
}

/**
 * Gathers completions that arrive within a few milliseconds into one request and one commit. Each caller
 * sees its own outcome, as with a single completion: resolved when accepted, an ApiError 409/404 when its
 * lease is gone, the network error when the request failed (the report queue retries).
 */
export class CompletionBatcher {
  private queue: Waiting[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly windowMs: number;
  private readonly maxItems: number;

  constructor(private readonly deps: CompletionBatcherDeps) {
    this.windowMs = deps.windowMs ?? 2;
    this.maxItems = deps.maxItems ?? 100;
  }

  complete(id: string, body: CompleteBody): Promise<void> {
    // Two reports about one session never share a batch (their answers are told apart by id).
    if (this.queue.some((w) => w.id === id)) this.flush();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ id, body, resolve, reject });
      if (this.queue.length >= this.maxItems) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.windowMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.queue.splice(0, this.queue.length);
    if (batch.length === 0) return;
    if (batch.length === 1) {
      const [one] = batch as [Waiting];
      this.deps.complete(one.id, one.body).then(() => one.resolve(), one.reject);
      return;
    }
    this.deps.completeMany(batch.map((w) => ({ id: w.id, ...w.body }))).then(
      (reply) => {
        const byId = new Map(reply.items.map((i) => [i.id, i.outcome]));
        for (const w of batch) {
          const outcome = byId.get(w.id);
          if (outcome === 'accepted') w.resolve();
          else if (outcome === 'not-found')
            w.reject(new ApiError(404, 'NOT_FOUND', `session ${w.id} not found`));
          else w.reject(new ApiError(409, 'LEASE_LOST', `lease lost for session ${w.id}`));
        }
      },
      (err: unknown) => {
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
    );
  }
}
