import { Agent, request, type Dispatcher } from 'undici';
import { SfwError, type ErrorCode } from '../core/errors.js';
import type {
  AlertView,
  BatchBody,
  ClaimBody,
  ClaimReply,
  CompleteBatchBody,
  CompleteBatchReply,
  CompleteBody,
  CreateSessionBody,
  HeartbeatBody,
  HeartbeatReply,
  ListSessionsQuery,
  QueueView,
  RunnerView,
  SchedulerConfigBody,
  SchedulerConfigView,
  SessionListField,
  SessionSummary,
  SessionView,
  StopBody,
} from '../protocol/schemas.js';
import { SESSION_LIST_FIELDS } from '../protocol/schemas.js';

/**
 * A listed session: the summary plus the fields asked for. A field whose JSON is over 64 KiB is left out
 * and named in `truncated`: read that session with getSession for it.
 */
export type SessionListItem<F extends SessionListField = never> = SessionSummary & {
  [K in F]-?: SessionView[K];
};

export type ListSessionsOptions<F extends SessionListField> = Omit<ListSessionsQuery, 'fields'> & {
  /** Extra fields per item; omitted: all of them; [] for summaries only (the light way to scan many). */
  fields?: readonly F[];
};

/**
 * The typed HTTP client for the whole API: the CLI, the runner, the dashboard tests and users use it.
 * Keep-alive connections are pooled per client; idempotent calls are retried with backoff and jitter.
 */

export class ApiError extends SfwError {
  override readonly name = 'ApiError';
  readonly httpStatus: number;
  constructor(httpStatus: number, code: ErrorCode, message: string, path?: string) {
    super(code, message, path === undefined ? undefined : { path });
    this.httpStatus = httpStatus;
  }
  override get status(): number {
    return this.httpStatus;
  }
}

/** The API could not be reached (connection refused, reset, timed out). */
export class NetworkError extends SfwError {
  override readonly name = 'NetworkError';
  readonly sent: boolean;
  constructor(message: string, sent: boolean, cause: unknown) {
    super('UNAVAILABLE', message, { cause });
    this.sent = sent;
  }
}

export interface ClientOptions {
  baseUrl: string;
  token?: string | undefined;
  /** Retries of idempotent calls after network errors and 429/502/503/504 (default 3). */
  retries?: number;
  /** First backoff delay; doubles each retry, with jitter (default 200 ms). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Per-request deadline beyond any long-poll wait (default 30 s). */
  timeoutMs?: number;
  /** Pooled keep-alive connections to the API (default 16). */
  connections?: number;
  userAgent?: string;
}

type Method = 'GET' | 'POST' | 'PUT';

interface CallOptions {
  body?: unknown;
  raw?: Buffer;
  contentType?: string;
  headers?: Record<string, string>;
  query?: Record<string, string | number | undefined>;
  /** May this call be retried safely? */
  idempotent: boolean;
  /** Extra time the server may hold the request (long-polls). */
  waitMs?: number;
  signal?: AbortSignal | undefined;
}

const RETRY_STATUSES = new Set([429, 502, 503, 504]);
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Exponential backoff with full jitter. */
export function backoff(attempt: number, baseMs: number, maxMs: number): number {
  const cap = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.round(cap / 2 + (Math.random() * cap) / 2);
}

export class SfwClient {
  readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly agent: Dispatcher;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly timeoutMs: number;
  private readonly userAgent: string;

  constructor(opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.token = opts.token;
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 200;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5000;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.userAgent = opts.userAgent ?? 'session-framework-sdk';
    this.agent = new Agent({ connections: opts.connections ?? 16, keepAliveTimeout: 30_000, pipelining: 1 });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  // ---- clients -------------------------------------------------------------------------------------

  /** Enqueues a session. With an idempotency key, a repeat returns the same session (and is retried safely). */
  createSession(body: CreateSessionBody, opts: { idempotencyKey?: string } = {}): Promise<SessionView> {
    const key = opts.idempotencyKey ?? body.idempotencyKey;
    return this.call<SessionView>('POST', '/v1/sessions', {
      body,
      idempotent: key !== undefined,
      ...(opts.idempotencyKey ? { headers: { 'idempotency-key': opts.idempotencyKey } } : {}),
    });
  }

  createSessions(sessions: BatchBody['sessions']): Promise<{ items: SessionView[] }> {
    return this.call('POST', '/v1/sessions/batch', {
      body: { sessions },
      idempotent: sessions.every((s) => s.idempotencyKey),
    });
  }

  /**
   * A page of sessions, newest first. Without `fields` every field is asked for (each bounded to 64 KiB,
   * the page to about 4 MiB: it ends early with nextCursor); `fields: []` answers summaries only.
   */
  listSessions<F extends SessionListField = SessionListField>(
    query: ListSessionsOptions<F> = {},
  ): Promise<{ items: SessionListItem<F>[]; nextCursor: string | null }> {
    const { fields, ...rest } = query;
    return this.call('GET', '/v1/sessions', {
      query: { ...rest, fields: (fields ?? SESSION_LIST_FIELDS).join(',') },
      idempotent: true,
    });
  }

  getSession(id: string, opts: { leaseToken?: string } = {}): Promise<SessionView> {
    return this.call('GET', `/v1/sessions/${encodeURIComponent(id)}`, {
      idempotent: true,
      ...(opts.leaseToken ? { headers: { 'x-lease-token': opts.leaseToken } } : {}),
    });
  }

  /** Long-polls until the session is terminal or timeoutMs passes; answers the session either way. */
  waitSession(id: string, timeoutMs = 30_000, signal?: AbortSignal): Promise<SessionView> {
    return this.call('GET', `/v1/sessions/${encodeURIComponent(id)}/wait`, {
      query: { timeoutMs },
      idempotent: true,
      waitMs: timeoutMs,
      signal,
    });
  }

  /** Waits as long as it takes (in long-poll rounds) for the session to end. */
  async waitUntilDone(
    id: string,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<SessionView> {
    const until = Date.now() + (opts.timeoutMs ?? Number.POSITIVE_INFINITY);
    for (;;) {
      const s = await this.waitSession(id, Math.max(1, Math.min(25_000, until - Date.now())), opts.signal);
      if (
        ['succeeded', 'failed', 'error', 'cancelled'].includes(s.status) ||
        Date.now() >= until ||
        opts.signal?.aborted
      )
        return s;
    }
  }

  cancelSession(id: string): Promise<SessionView> {
    return this.call('POST', `/v1/sessions/${encodeURIComponent(id)}/cancel`, { idempotent: true });
  }

  async getArtifact(id: string, name: string): Promise<{ contentType: string; data: Buffer }> {
    return this.callRaw(`/v1/sessions/${encodeURIComponent(id)}/artifacts/${encodeURIComponent(name)}`);
  }

  queue(): Promise<QueueView> {
    return this.call('GET', '/v1/queue', { idempotent: true });
  }

  async runners(): Promise<RunnerView[]> {
    return (await this.call<{ items: RunnerView[] }>('GET', '/v1/runners', { idempotent: true })).items;
  }

  async alerts(): Promise<AlertView[]> {
    return (await this.call<{ items: AlertView[] }>('GET', '/v1/alerts', { idempotent: true })).items;
  }

  getSchedulerConfig(): Promise<SchedulerConfigView> {
    return this.call('GET', '/v1/config/scheduler', { idempotent: true });
  }

  setSchedulerConfig(body: SchedulerConfigBody): Promise<SchedulerConfigView> {
    return this.call('PUT', '/v1/config/scheduler', { body, idempotent: true });
  }

  async metrics(): Promise<string> {
    return (await this.callRaw('/metrics')).data.toString('utf8');
  }

  health(): Promise<{ ok: boolean }> {
    return this.call('GET', '/healthz', { idempotent: true });
  }

  ready(): Promise<{ ok: boolean }> {
    return this.call('GET', '/readyz', { idempotent: false });
  }

  // ---- runners -------------------------------------------------------------------------------------

  /** Claims up to `slots` sessions, waiting up to waitMs. Retried only when the request never left. */
  claim(runnerId: string, body: ClaimBody, signal?: AbortSignal): Promise<ClaimReply> {
    return this.call('POST', `/v1/runners/${encodeURIComponent(runnerId)}/claim`, {
      body,
      idempotent: false,
      waitMs: body.waitMs ?? 0,
      signal,
    });
  }

  heartbeat(runnerId: string, body: HeartbeatBody): Promise<HeartbeatReply> {
    return this.call('POST', `/v1/runners/${encodeURIComponent(runnerId)}/heartbeat`, {
      body,
      idempotent: true,
    });
  }

  /** Fenced by the lease token; a repeat of an accepted completion is answered, a stale lease gets 409. */
  complete(id: string, body: CompleteBody): Promise<SessionView> {
    return this.call('POST', `/v1/sessions/${encodeURIComponent(id)}/complete`, { body, idempotent: true });
  }

  /** Several completions in one request (each fenced by its lease token); safe to repeat. */
  completeMany(runnerId: string, items: CompleteBatchBody['items']): Promise<CompleteBatchReply> {
    return this.call('POST', `/v1/runners/${encodeURIComponent(runnerId)}/complete`, {
      body: { items },
      idempotent: true,
    });
  }

  uploadArtifact(
    id: string,
    name: string,
    leaseToken: string,
    data: Buffer,
    contentType = 'application/octet-stream',
  ): Promise<{ name: string; size: number; contentType: string }> {
    return this.call('PUT', `/v1/sessions/${encodeURIComponent(id)}/artifacts/${encodeURIComponent(name)}`, {
      raw: data,
      contentType,
      headers: { 'x-lease-token': leaseToken },
      idempotent: true,
    });
  }

  stopRunner(runnerId: string, body: StopBody = {}): Promise<{ requeued: string[] }> {
    return this.call('POST', `/v1/runners/${encodeURIComponent(runnerId)}/stop`, { body, idempotent: true });
  }

  // ---- transport -----------------------------------------------------------------------------------

  private url(path: string, query?: Record<string, string | number | undefined>): string {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) qs.set(k, String(v));
    const s = qs.toString();
    return `${this.baseUrl}${path}${s ? `?${s}` : ''}`;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': this.userAgent, ...extra };
    if (this.token) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  private async callRaw(path: string): Promise<{ contentType: string; data: Buffer }> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await request(this.url(path), {
          method: 'GET',
          dispatcher: this.agent,
          headers: this.headers(),
          headersTimeout: this.timeoutMs,
          bodyTimeout: this.timeoutMs,
        });
        const data = Buffer.from(await res.body.arrayBuffer());
        if (res.statusCode >= 400) {
          if (RETRY_STATUSES.has(res.statusCode) && attempt < this.retries) {
            await sleep(backoff(attempt, this.backoffMs, this.maxBackoffMs));
            continue;
          }
          throw toApiError(res.statusCode, data.toString('utf8'));
        }
        return { contentType: String(res.headers['content-type'] ?? ''), data };
      } catch (err) {
        if (err instanceof ApiError || attempt >= this.retries) throw wrapNetwork(err);
        await sleep(backoff(attempt, this.backoffMs, this.maxBackoffMs));
      }
    }
  }

  private async call<T>(method: Method, path: string, opts: CallOptions): Promise<T> {
    const url = this.url(path, opts.query);
    const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    const contentType = opts.raw ? (opts.contentType ?? 'application/octet-stream') : 'application/json';
    const headers = this.headers({
      ...(payload === undefined ? {} : { 'content-type': contentType }),
      ...opts.headers,
    });
    const timeout = this.timeoutMs + (opts.waitMs ?? 0);
    for (let attempt = 0; ; attempt++) {
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, {
          method,
          dispatcher: this.agent,
          headers,
          ...(payload === undefined ? {} : { body: payload }),
          headersTimeout: timeout,
          bodyTimeout: timeout,
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
      } catch (err) {
        const code = (err as { code?: string }).code ?? '';
        const notSent = NOT_SENT_CODES.has(code);
        if ((opts.idempotent || notSent) && attempt < this.retries && !opts.signal?.aborted) {
          await sleep(backoff(attempt, this.backoffMs, this.maxBackoffMs), opts.signal);
          continue;
        }
        throw wrapNetwork(err, notSent);
      }
      const text = await res.body.text();
      if (res.statusCode < 400) return (text ? JSON.parse(text) : undefined) as T;
      if (
        RETRY_STATUSES.has(res.statusCode) &&
        opts.idempotent &&
        attempt < this.retries &&
        !opts.signal?.aborted
      ) {
        await sleep(backoff(attempt, this.backoffMs, this.maxBackoffMs), opts.signal);
        continue;
      }
      throw toApiError(res.statusCode, text);
    }
  }
}

function toApiError(status: number, text: string): ApiError {
  try {
    const body = JSON.parse(text) as { error?: { code?: ErrorCode; message?: string; path?: string } };
    if (body.error?.message)
      return new ApiError(status, body.error.code ?? 'INTERNAL', body.error.message, body.error.path);
  } catch {
    /* not JSON */
  }
  return new ApiError(
    status,
    status >= 500 ? 'INTERNAL' : 'VALIDATION',
    `HTTP ${status}: ${text.slice(0, 200)}`,
  );
}

function wrapNetwork(err: unknown, notSent = false): Error {
  if (err instanceof SfwError) return err;
  const e = err as Error & { code?: string };
  return new NetworkError(`cannot reach the API: ${e.code ?? ''} ${e.message}`.trim(), !notSent, err);
}
