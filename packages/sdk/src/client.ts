import http from 'node:http';
import https from 'node:https';
import { ApiError, NetworkError, type ErrorCode } from './errors.js';
import { backoff, sleep } from './retry.js';
import {
  SESSION_LIST_FIELDS,
  type AlertView,
  type BatchBody,
  type BatchReply,
  type ClaimBody,
  type ClaimReply,
  type CompleteBatchBody,
  type CompleteBatchReply,
  type CompleteBody,
  type CreateScheduleBody,
  type CreateSessionBody,
  type CreatedSession,
  type HeartbeatBody,
  type HeartbeatReply,
  type ListSchedulesQuery,
  type ListSessionsQuery,
  type QueueView,
  type RegisterTypesBody,
  type RegisterTypesReply,
  type RunnerView,
  type ScheduleList,
  type ScheduleView,
  type SchedulerConfigBody,
  type SchedulerConfigView,
  type SessionListField,
  type SessionStatus,
  type SessionSummary,
  type SessionTypeView,
  type SessionView,
  type StopBody,
  type UpdateScheduleBody,
  type LiveEvent,
  type LiveFrameMeta,
  type LiveState,
} from './wire.js';
import type {
  SaveSessionStateBody,
  SessionStateReply,
  StateDetail,
  StateList,
  StateSaveOutcome,
} from './states.js';
import type { LimitList, LimitView, PutLimitBody, ReportBackoffBody, ReportBackoffReply } from './limits.js';
import type { RetentionView } from './retention.js';
import type {
  CreateWebhookBody,
  ListDeliveriesQuery,
  ListWebhooksQuery,
  UpdateWebhookBody,
  WebhookDeliveryList,
  WebhookDeliveryView,
  WebhookList,
  WebhookView,
} from './webhooks.js';
import type { CancelSessionsBody, CancelSessionsReply, ExportSessionsQuery, TagView } from './batches.js';

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

export interface ClientOptions {
  baseUrl: string;
  token?: string | undefined;
  /** Retries of idempotent calls after network errors and 429/502/503/504 (default 3). */
  retries?: number;
  /** First backoff delay; doubles each retry, with jitter (default 200 ms). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Deadline of each request beyond any long-poll wait (default 30 s). */
  timeoutMs?: number;
  /** Requests in flight at once; more wait their turn (default 16). */
  connections?: number;
  userAgent?: string;
}

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

interface CallOptions {
  body?: unknown;
  raw?: Uint8Array;
  contentType?: string;
  headers?: Record<string, string>;
  query?: Record<string, string | number | undefined>;
  /** May this call be retried safely? */
  idempotent: boolean;
  /** Extra time the server may hold the request (long-polls). */
  waitMs?: number;
  signal?: AbortSignal | undefined;
}

interface Answer {
  status: number;
  contentType: string;
  data: Buffer;
  /** The Location header of a redirect. */
  location?: string | undefined;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

const RETRY_STATUSES = new Set([429, 502, 503, 504]);
/** Failures that leave the request unsent: safe to retry whatever the call. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
const TERMINAL: readonly SessionStatus[] = ['succeeded', 'failed', 'error', 'cancelled'];

/**
 * The typed HTTP client for the whole API, on Node's own http/https with pooled keep-alive connections
 * (a runner makes many small calls: Node's fetch costs about three times the CPU per call). The CLI, the
 * runner and users use it. Idempotent calls are retried with backoff and jitter; at most `connections`
 * requests are in flight.
 */
export class SfwClient {
  readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly timeoutMs: number;
  private readonly userAgent: string;
  private readonly slots: Slots;
  private readonly transport: typeof http | typeof https;
  private readonly agent: http.Agent;
  private closed = false;

  constructor(opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.token = opts.token;
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 200;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5000;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.userAgent = opts.userAgent ?? 'session-framework-sdk';
    const connections = opts.connections ?? 16;
    this.slots = new Slots(connections);
    const secure = new URL(this.baseUrl).protocol === 'https:';
    this.transport = secure ? https : http;
    this.agent = new (secure ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: connections });
  }

  /** Refuses new calls and waits for those in flight. */
  async close(): Promise<void> {
    this.closed = true;
    await this.slots.idle();
    this.agent.destroy();
  }

  // ---- clients -------------------------------------------------------------------------------------

  /**
   * Enqueues a session. With an idempotency key, a repeat returns the same session (and is retried safely).
   * `warnings` says what the API could not check, e.g. a type no runner has registered.
   */
  createSession(body: CreateSessionBody, opts: { idempotencyKey?: string } = {}): Promise<CreatedSession> {
    const key = opts.idempotencyKey ?? body.idempotencyKey;
    return this.call<CreatedSession>('POST', '/v1/sessions', {
      body,
      idempotent: key !== undefined,
      ...(opts.idempotencyKey ? { headers: { 'idempotency-key': opts.idempotencyKey } } : {}),
    });
  }

  createSessions(sessions: BatchBody['sessions']): Promise<BatchReply> {
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
      if (TERMINAL.includes(s.status) || Date.now() >= until || opts.signal?.aborted) return s;
    }
  }

  cancelSession(id: string): Promise<SessionView> {
    return this.call('POST', `/v1/sessions/${encodeURIComponent(id)}/cancel`, { idempotent: true });
  }

  // ---- batches: tags, export, bulk cancel -----------------------------------------------------------

  /** A tag's sessions by status, with whether every one is final (`done`). */
  getTag(tag: string): Promise<TagView> {
    return this.call('GET', `/v1/tags/${encodeURIComponent(tag)}`, { idempotent: true });
  }

  /**
   * Cancels every queued or running session that matches (all the fields given; at least one) in one
   * statement: queued ones at once, running ones at their runner's next heartbeat. A repeat counts nothing.
   */
  cancelSessions(body: CancelSessionsBody): Promise<CancelSessionsReply> {
    return this.call('POST', '/v1/sessions/cancel', { body, idempotent: true });
  }

  /**
   * Every session that matches, oldest first, as JSON lines (default) or CSV, streamed: the chunks arrive
   * as the server reads them, so any number of sessions takes constant memory on both sides. Breaking out
   * of the loop ends the request.
   */
  async *exportSessions(query: ExportSessionsQuery = {}, signal?: AbortSignal): AsyncGenerator<Buffer> {
    let complete = false;
    for await (const c of this.stream('/v1/sessions/export', query, {}, signal, () => (complete = true)))
      yield c;
    if (!complete) throw new NetworkError('the export was cut short', true, undefined);
  }

  /**
   * A queued or running session's page, live (GET /v1/sessions/:id/live as server-sent events): `state`
   * events say whether frames are coming (`waiting` for the runner, `live`, `no-page`), `frame` events
   * carry a JPEG of the page with its size, time and URL, and `end` comes when the session ends. Nothing is
   * captured while nobody watches; breaking out of the loop (or `signal`) stops watching.
   */
  async *watchLive(id: string, signal?: AbortSignal): AsyncGenerator<LiveEvent> {
    const decoder = new TextDecoder();
    let buf = '';
    const path = `/v1/sessions/${encodeURIComponent(id)}/live`;
    for await (const chunk of this.stream(path, { format: 'sse' }, { accept: 'text/event-stream' }, signal)) {
      buf += decoder.decode(chunk, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const name = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (!name || !data) continue;
        const d = JSON.parse(data) as Record<string, unknown>;
        if (name === 'frame') {
          const { jpeg, ...meta } = d as unknown as LiveFrameMeta & { jpeg: string };
          yield { type: 'frame', ...meta, jpeg: Buffer.from(jpeg, 'base64') };
        } else if (name === 'state') yield { type: 'state', ...(d as { state: LiveState; message: string }) };
        else if (name === 'end') {
          yield { type: 'end', message: typeof d.message === 'string' ? d.message : '' };
          return;
        }
      }
    }
  }

  /** A GET whose answer is read as it comes; `completed` is called when it came whole. */
  private async *stream(
    path: string,
    query: Record<string, string | number | undefined>,
    extra: Record<string, string>,
    signal: AbortSignal | undefined,
    completed?: () => void,
  ): AsyncGenerator<Buffer> {
    const url = this.url(path, query);
    const headers: Record<string, string> = { 'user-agent': this.userAgent, ...extra };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (this.closed) throw new NetworkError('the client was closed', false, undefined);
    await this.slots.take(signal);
    const req = this.transport.request(url, { method: 'GET', headers, agent: this.agent, signal });
    try {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        req.once('response', resolve);
        req.once('error', (err) => reject(unreachable(err)));
        // No answer, or a pause between chunks, longer than the client's deadline ends the stream.
        req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no data within ${this.timeoutMs} ms`)));
        req.end();
      });
      if ((res.statusCode ?? 0) >= 400) {
        const chunks: Buffer[] = [];
        for await (const c of res) chunks.push(c as Buffer);
        throw toApiError(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'));
      }
      try {
        for await (const c of res) yield c as Buffer;
      } catch (err) {
        throw unreachable(err);
      }
      if (res.complete) completed?.();
    } finally {
      req.destroy();
      this.slots.give();
    }
  }

  /**
   * An artifact's bytes. An API whose artifacts live in object storage may answer with a redirect to a
   * presigned URL (ARTIFACTS_REDIRECT): it is followed once, without the API token.
   */
  async getArtifact(id: string, name: string): Promise<{ contentType: string; data: Buffer }> {
    const path = `/v1/sessions/${encodeURIComponent(id)}/artifacts/${encodeURIComponent(name)}`;
    const answer = await this.send('GET', path, { idempotent: true });
    if (!REDIRECT_STATUSES.has(answer.status)) return { contentType: answer.contentType, data: answer.data };
    if (!answer.location)
      throw new ApiError(answer.status, 'INTERNAL', `HTTP ${answer.status} without a Location`);
    const { contentType, data } = await this.fetchRedirect(new URL(answer.location, this.url(path)));
    return { contentType, data };
  }

  /** GET of a redirect's target: its own transport and socket, no Authorization (it is not the API). */
  private async fetchRedirect(target: URL): Promise<Answer> {
    if (target.protocol !== 'http:' && target.protocol !== 'https:')
      throw new ApiError(502, 'INTERNAL', `the API redirected to ${target.protocol} URL`);
    const transport = target.protocol === 'https:' ? https : http;
    const res = await new Promise<Answer>((resolve, reject) => {
      const req = transport.request(
        target,
        { method: 'GET', headers: { 'user-agent': this.userAgent } },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('error', (err) => reject(unreachable(err)));
          r.on('end', () =>
            resolve({
              status: r.statusCode ?? 0,
              contentType: r.headers['content-type'] ?? '',
              data: Buffer.concat(chunks),
            }),
          );
        },
      );
      req.on('error', (err) => reject(unreachable(err)));
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.end();
    });
    if (res.status >= 400) throw toApiError(res.status, res.data.toString('utf8'));
    return res;
  }

  queue(): Promise<QueueView> {
    return this.call('GET', '/v1/queue', { idempotent: true });
  }

  async runners(): Promise<RunnerView[]> {
    return (await this.call<{ items: RunnerView[] }>('GET', '/v1/runners', { idempotent: true })).items;
  }

  /** Session types the runners registered, with the input schema the API checks at enqueue. */
  async types(): Promise<SessionTypeView[]> {
    return (await this.call<{ types: SessionTypeView[] }>('GET', '/v1/types', { idempotent: true })).types;
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

  // ---- schedules -----------------------------------------------------------------------------------

  /** Creates a schedule: a session enqueued at each fire time of its cron expression. */
  createSchedule(body: CreateScheduleBody): Promise<ScheduleView> {
    return this.call('POST', '/v1/schedules', { body, idempotent: false });
  }

  /** A page of schedules by name, each with its latest sessions. */
  listSchedules(query: ListSchedulesQuery = {}): Promise<ScheduleList> {
    return this.call('GET', '/v1/schedules', { query, idempotent: true });
  }

  /** A schedule with its next fire time and its latest sessions. */
  getSchedule(id: string): Promise<ScheduleView> {
    return this.call('GET', `/v1/schedules/${encodeURIComponent(id)}`, { idempotent: true });
  }

  /** Changes a schedule; a new cron, time zone or an enable counts its next fire time from now. */
  updateSchedule(id: string, body: UpdateScheduleBody): Promise<ScheduleView> {
    return this.call('PATCH', `/v1/schedules/${encodeURIComponent(id)}`, { body, idempotent: true });
  }

  /** Deletes a schedule; the sessions it made stay (listed by scheduleId). */
  async deleteSchedule(id: string): Promise<void> {
    await this.call('DELETE', `/v1/schedules/${encodeURIComponent(id)}`, { idempotent: true });
  }

  async metrics(): Promise<string> {
    return (await this.send('GET', '/metrics', { idempotent: true })).data.toString('utf8');
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

  /** Registers the types a runner serves with their input schemas, replacing what it registered before. */
  registerTypes(runnerId: string, body: RegisterTypesBody): Promise<RegisterTypesReply> {
    return this.call('PUT', `/v1/runners/${encodeURIComponent(runnerId)}/types`, { body, idempotent: true });
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
    data: Uint8Array,
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

  // ---- webhooks ------------------------------------------------------------------------------------

  /** Creates a webhook; the answer carries its secret in full (generated when not given). */
  createWebhook(body: CreateWebhookBody): Promise<WebhookView> {
    return this.call('POST', '/v1/webhooks', { body, idempotent: false });
  }

  listWebhooks(query: ListWebhooksQuery = {}): Promise<WebhookList> {
    return this.call('GET', '/v1/webhooks', { query, idempotent: true });
  }

  /** A webhook; its secret in full only with `reveal`. */
  getWebhook(id: string, opts: { reveal?: boolean } = {}): Promise<WebhookView> {
    return this.call('GET', `/v1/webhooks/${encodeURIComponent(id)}`, {
      query: { reveal: opts.reveal ? 'true' : undefined },
      idempotent: true,
    });
  }

  updateWebhook(id: string, body: UpdateWebhookBody): Promise<WebhookView> {
    return this.call('PATCH', `/v1/webhooks/${encodeURIComponent(id)}`, { body, idempotent: true });
  }

  /** Deletes a webhook and its deliveries. */
  async deleteWebhook(id: string): Promise<void> {
    await this.call('DELETE', `/v1/webhooks/${encodeURIComponent(id)}`, { idempotent: true });
  }

  /** A webhook's deliveries, newest first: status, attempts, last answer, next try. */
  listWebhookDeliveries(id: string, query: ListDeliveriesQuery = {}): Promise<WebhookDeliveryList> {
    return this.call('GET', `/v1/webhooks/${encodeURIComponent(id)}/deliveries`, { query, idempotent: true });
  }

  /** Sends a delivery again (pending, due now, with a fresh retry window). */
  redeliverWebhook(id: string, deliveryId: string): Promise<WebhookDeliveryView> {
    return this.call(
      'POST',
      `/v1/webhooks/${encodeURIComponent(id)}/deliveries/${encodeURIComponent(deliveryId)}/retry`,
      { idempotent: true },
    );
  }

  // ---- retention ---------------------------------------------------------------------------------

  /** Retention settings of the answering API replica and what retention removed (fleet-wide). */
  retention(): Promise<RetentionView> {
    return this.call('GET', '/v1/retention', { idempotent: true });
  }

  // ---- per-key limits ------------------------------------------------------------------------------

  /** Every key's limit with its live numbers (running, waiting), by key. */
  listLimits(): Promise<LimitList> {
    return this.call('GET', '/v1/limits', { idempotent: true });
  }

  /** A key's limit and its live numbers. */
  getLimit(key: string): Promise<LimitView> {
    return this.call('GET', `/v1/limits/${encodeURIComponent(key)}`, { idempotent: true });
  }

  /** Sets a key's limit (replacing any it had); waiting sessions see the new one at the next claim. */
  putLimit(key: string, body: PutLimitBody): Promise<LimitView> {
    return this.call('PUT', `/v1/limits/${encodeURIComponent(key)}`, { body, idempotent: true });
  }

  /** Drops a key's limit; its waiting sessions go back to the queue at once. Answers the limit as it was. */
  deleteLimit(key: string): Promise<LimitView> {
    return this.call('DELETE', `/v1/limits/${encodeURIComponent(key)}`, { idempotent: true });
  }

  /**
   * Runner: a session's site answered 429/503 with Retry-After; its key claims nothing until then
   * (under the session's lease: a lost one is 409 LEASE_LOST).
   */
  reportBackoff(runnerId: string, sessionId: string, body: ReportBackoffBody): Promise<ReportBackoffReply> {
    return this.call(
      'POST',
      `/v1/runners/${encodeURIComponent(runnerId)}/sessions/${encodeURIComponent(sessionId)}/backoff`,
      { body, idempotent: true },
    );
  }

  // ---- named states --------------------------------------------------------------------------------

  /** Each named state's newest version: name, version, size, when and by which session (never its contents). */
  listStates(): Promise<StateList> {
    return this.call('GET', '/v1/states', { idempotent: true });
  }

  /** A named state and its kept versions, newest first. */
  getState(name: string): Promise<StateDetail> {
    return this.call('GET', `/v1/states/${encodeURIComponent(name)}`, { idempotent: true });
  }

  /** Deletes every version of a named state. */
  async deleteState(name: string): Promise<void> {
    await this.call('DELETE', `/v1/states/${encodeURIComponent(name)}`, { idempotent: true });
  }

  /** Runner: the storage state its session uses (`state.use`), under the session's lease. */
  getSessionState(runnerId: string, sessionId: string, leaseToken: string): Promise<SessionStateReply> {
    return this.call('GET', this.sessionStatePath(runnerId, sessionId), {
      headers: { 'x-lease-token': leaseToken },
      idempotent: true,
    });
  }

  /**
   * Runner: saves its session's storage state under `state.save`, fenced by the lease (409 LEASE_LOST
   * when it was lost). The answer says whether it was saved or a newer version kept.
   */
  saveSessionState(
    runnerId: string,
    sessionId: string,
    body: SaveSessionStateBody,
  ): Promise<StateSaveOutcome> {
    // A repeat after a lost answer saves once more as a new version: harmless, so it may be retried.
    return this.call('PUT', this.sessionStatePath(runnerId, sessionId), { body, idempotent: true });
  }

  private sessionStatePath(runnerId: string, sessionId: string): string {
    return `/v1/runners/${encodeURIComponent(runnerId)}/sessions/${encodeURIComponent(sessionId)}/state`;
  }

  // ---- transport -----------------------------------------------------------------------------------

  private async call<T>(method: Method, path: string, opts: CallOptions): Promise<T> {
    const text = (await this.send(method, path, opts)).data.toString('utf8');
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** One call with its retries: the answer of a success, else an ApiError or a NetworkError. */
  private async send(method: Method, path: string, opts: CallOptions): Promise<Answer> {
    const url = this.url(path, opts.query);
    const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    const headers: Record<string, string> = { 'user-agent': this.userAgent };
    if (payload !== undefined)
      headers['content-type'] = opts.raw
        ? (opts.contentType ?? 'application/octet-stream')
        : 'application/json';
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    Object.assign(headers, opts.headers);
    const deadlineMs = this.timeoutMs + (opts.waitMs ?? 0);
    for (let attempt = 0; ; attempt++) {
      const mayRetry = () => attempt < this.retries && !opts.signal?.aborted && !this.closed;
      let answer: Answer;
      try {
        answer = await this.requestOnce(url, { method, headers, body: payload }, deadlineMs, opts.signal);
      } catch (err) {
        if (err instanceof NetworkError && (opts.idempotent || !err.sent) && mayRetry()) {
          await sleep(backoff(attempt, this.backoffMs, this.maxBackoffMs), opts.signal);
          continue;
        }
        throw err;
      }
      if (answer.status < 400) return answer;
      if (RETRY_STATUSES.has(answer.status) && opts.idempotent && mayRetry()) {
        await sleep(backoff(attempt, this.backoffMs, this.maxBackoffMs), opts.signal);
        continue;
      }
      throw toApiError(answer.status, answer.data.toString('utf8'));
    }
  }

  /** One request, answer read whole, within its deadline; any failure to get it is a NetworkError. */
  private async requestOnce(
    url: string,
    init: { method: Method; headers: Record<string, string>; body: string | Uint8Array | undefined },
    deadlineMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Answer> {
    if (this.closed) throw new NetworkError('the client was closed', false, undefined);
    try {
      await this.slots.take(signal);
    } catch (err) {
      throw new NetworkError('request aborted before it was sent', false, err);
    }
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      return await new Promise<Answer>((resolve, reject) => {
        let timedOut = false;
        const headers = { ...init.headers };
        if (init.body !== undefined) headers['content-length'] = String(Buffer.byteLength(init.body));
        const req = this.transport.request(
          url,
          { method: init.method, headers, agent: this.agent },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', fail);
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                contentType: res.headers['content-type'] ?? '',
                data: Buffer.concat(chunks),
                location: res.headers.location,
              }),
            );
          },
        );
        function fail(err: Error) {
          if (timedOut) reject(new NetworkError(`no answer from the API within ${deadlineMs} ms`, true, err));
          else if (signal?.aborted) reject(new NetworkError('request aborted', true, err));
          else reject(unreachable(err));
        }
        req.on('error', fail);
        timer = setTimeout(() => {
          timedOut = true;
          req.destroy(new Error('deadline passed'));
        }, deadlineMs);
        onAbort = () => req.destroy(new Error('aborted'));
        if (signal?.aborted) onAbort();
        else signal?.addEventListener('abort', onAbort, { once: true });
        req.end(init.body);
      });
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      this.slots.give();
    }
  }

  private url(path: string, query?: Record<string, string | number | undefined>): string {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) qs.set(k, String(v));
    const s = qs.toString();
    return `${this.baseUrl}${path}${s ? `?${s}` : ''}`;
  }
}

/** At most `size` holders at once; the rest wait in order, as requests wait for a pool of that many sockets. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  private readonly idlers: (() => void)[] = [];

  constructor(private readonly size: number) {
    this.free = size;
  }

  take(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.waiting.splice(this.waiting.indexOf(grant), 1);
        reject(signal?.reason as Error);
      };
      this.waiting.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  give(): void {
    const next = this.waiting.shift();
    if (next) return next();
    this.free++;
    if (this.free === this.size) for (const done of this.idlers.splice(0)) done();
  }

  /** Resolves once nothing holds a slot. */
  idle(): Promise<void> {
    if (this.free === this.size) return Promise.resolve();
    return new Promise((resolve) => this.idlers.push(resolve));
  }
}

/** What a failed request says about the API, and whether it surely never left. */
function unreachable(err: unknown): NetworkError {
  const code = (err as { code?: unknown }).code;
  const detail = (err as Error).message;
  const message = `cannot reach the API: ${[typeof code === 'string' ? code : '', detail].filter(Boolean).join(' ')}`;
  return new NetworkError(message, !(typeof code === 'string' && NOT_SENT_CODES.has(code)), err);
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
