import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { SfwError, ValidationError } from '../../core/errors.js';
import { isTerminal } from '../../core/types.js';
import { isUuid } from '../../core/ids.js';
import { checkFlowInput } from '../../protocol/flow.js';
import { flowConcurrencyKey } from '../../protocol/limits.js';
import { findUnstorable, storableCompletion } from '../../protocol/text.js';
import {
  BatchBody,
  BatchReply,
  type BrowserOptions,
  CompleteBody,
  CreateSessionBody,
  CreatedSession,
  IdParams,
  LIST_ERROR_MESSAGE_CHARS,
  LIST_FIELD_MAX_BYTES,
  LIST_PAGE_MAX_BYTES,
  ListSessionsQuery,
  SESSION_LIST_FIELDS,
  SessionList,
  type SessionListField,
  SessionView,
  type StateOptions,
  WaitQuery,
} from '../../protocol/schemas.js';
import {
  cancelSession,
  completeSession,
  getSession,
  IdempotencyConflictError,
  insertSessions,
  listSessionColumns,
  listSessions,
  type NewSession,
} from '../../store/sessions.js';
import { LIST_FIELD_COLUMNS, sessionSummaryView, sessionView } from '../views.js';
import { requestGone } from '../waiters.js';

/** Checks what the schema cannot: unstorable text, flow steps, dates. Throws with the bad field's path. */
export function checkNewSession(s: CreateSessionBody, at: string): NewSession {
  // An input is the client's own data: a value Postgres cannot store is refused, never changed.
  const unstorable =
    findUnstorable(s.input, `${at}.input`) ??
    findUnstorable(s.idempotencyKey, `${at}.idempotencyKey`) ??
    findUnstorable(s.concurrencyKey, `${at}.concurrencyKey`);
  if (unstorable) throw new ValidationError(unstorable.path, unstorable.message);
  if (s.type === 'flow') {
    const problem = checkFlowInput(s.input);
    if (problem) throw new ValidationError(`${at}.${problem.path}`, problem.message);
  }
  if (s.runAt !== undefined && Number.isNaN(Date.parse(s.runAt)))
    throw new ValidationError(`${at}.runAt`, 'must be a date-time');
  if (s.browser) checkBrowserOptions(s.browser, `${at}.browser`);
  if (s.state) checkStateOptions(s.state, `${at}.state`);
  // A flow is limited by the host it starts at unless it names its key.
  if (s.concurrencyKey === undefined && s.type === 'flow') {
    const key = flowConcurrencyKey(s.input);
    if (key !== undefined) return { ...s, concurrencyKey: key };
  }
  return s;
}

/** What the schema cannot check of a session's named state options (docs/state.md). */
export function checkStateOptions(o: StateOptions, at: string): void {
  if (o.use === undefined && o.save === undefined)
    throw new ValidationError(at, 'must name a state to use or to save (state.use, state.save)');
  if (o.save === undefined && (o.overwrite !== undefined || o.ttlMs !== undefined))
    throw new ValidationError(
      `${at}.${o.overwrite !== undefined ? 'overwrite' : 'ttlMs'}`,
      'applies to a save: give state.save too',
    );
}

/** What the schema cannot check of a session's browser options. */
export function checkBrowserOptions(b: BrowserOptions, at: string): void {
  if (b.proxy !== undefined) checkProxy(b.proxy, `${at}.proxy`);
  if (b.timezoneId !== undefined && !isTimeZone(b.timezoneId))
    throw new ValidationError(`${at}.timezoneId`, 'must be an IANA time zone, e.g. Europe/Berlin');
}

/**
 * A session's upstream proxy: http(s)://host[:port] and nothing else. The runner's egress proxy
 * chains to it after the target policy (which the proxy's own address must pass too).
 */
function checkProxy(p: NonNullable<BrowserOptions['proxy']>, at: string): void {
  const supported = 'use http://host:port or https://host:port';
  let u: URL | undefined;
  try {
    u = new URL(p.server);
  } catch {
    u = undefined;
  }
  if (!u || u.hostname === '') throw new ValidationError(`${at}.server`, `is not a proxy URL: ${supported}`);
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new ValidationError(
      `${at}.server`,
      `${u.protocol.slice(0, 20)}// proxies are not supported: ${supported} (an HTTP proxy, which the runner reaches with CONNECT)`,
    );
  if (u.username !== '' || u.password !== '')
    throw new ValidationError(
      `${at}.server`,
      'must not hold credentials: give browser.proxy.username and password',
    );
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '')
    throw new ValidationError(`${at}.server`, `must not have a path, query or fragment: ${supported}`);
  if (p.username?.includes(':'))
    throw new ValidationError(`${at}.username`, 'must not contain ":" (HTTP basic authentication)');
  if (p.password !== undefined && p.username === undefined)
    throw new ValidationError(`${at}.username`, 'is required with browser.proxy.password');
}

function isTimeZone(id: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: id });
    return true;
  } catch {
    return false;
  }
}

/** A key already taken by another request: 409 naming where the key was given. */
function keyConflict(path: (index: number) => string) {
  return (err: unknown): never => {
    if (!(err instanceof IdempotencyConflictError)) throw err;
    const at = path(err.index);
    throw new SfwError('CONFLICT', `${at}: ${err.message}`, { path: at });
  };
}

const encodeCursor = (id: string) => Buffer.from(id).toString('base64url');
function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString();
  if (!isUuid(id)) throw new ValidationError('query.cursor', 'is not a cursor this API returned');
  return id;
}

/** `fields=input,result`: the extra fields a list asks for, each named once. */
function listFields(raw: string | undefined): SessionListField[] {
  const out: SessionListField[] = [];
  for (const name of (raw ?? '').split(',')) {
    const f = name.trim();
    if (f === '') continue;
    if (!(SESSION_LIST_FIELDS as readonly string[]).includes(f)) {
      throw new ValidationError(
        'query.fields',
        `"${f.slice(0, 50)}" is not a list field: use ${SESSION_LIST_FIELDS.join(', ')} (comma-separated)`,
      );
    }
    if (!out.includes(f as SessionListField)) out.push(f as SessionListField);
  }
  return out;
}

export async function sessionRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.deps;

  app.post(
    '/v1/sessions',
    {
      config: { scope: 'client' },
      schema: {
        body: CreateSessionBody,
        headers: Type.Object({
          'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
        }),
        response: { 200: CreatedSession, 201: CreatedSession },
      },
    },
    async (req, reply) => {
      // The input schema a runner registered for the type (400 at body.input…), else a warning; the
      // type's timeoutMs and maxAttempts where the request gives none.
      const {
        warnings,
        sessions: [s],
      } = await app.sessionTypes.check([checkNewSession(req.body, 'body')], () => 'body');
      if (!s) throw new Error('no session to enqueue');
      const header = req.headers['idempotency-key'];
      const key = header ?? s.idempotencyKey;
      const [out] = await insertSessions(db, [
        { ...s, ...(key === undefined ? {} : { idempotencyKey: key }) },
      ]).catch(keyConflict(() => (header === undefined ? 'body.idempotencyKey' : 'headers.idempotency-key')));
      if (!out) throw new Error('enqueue returned nothing');
      return reply
        .status(out.created ? 201 : 200)
        .send({ ...sessionView(out.row), ...(warnings.length > 0 ? { warnings } : {}) });
    },
  );

  app.post(
    '/v1/sessions/batch',
    {
      config: { scope: 'client' },
      schema: { body: BatchBody, response: { 201: BatchReply } },
    },
    async (req, reply) => {
      const { warnings, sessions: items } = await app.sessionTypes.check(
        req.body.sessions.map((s, i) => checkNewSession(s, `body.sessions.${i}`)),
        (i) => `body.sessions.${i}`,
      );
      const out = await insertSessions(db, items).catch(
        keyConflict((i) => `body.sessions.${i}.idempotencyKey`),
      );
      return reply
        .status(201)
        .send({ items: out.map((o) => sessionView(o.row)), ...(warnings.length > 0 ? { warnings } : {}) });
    },
  );

  app.get(
    '/v1/sessions',
    {
      config: { scope: 'client' },
      schema: { querystring: ListSessionsQuery, response: { 200: SessionList } },
    },
    async (req) => {
      const q = req.query;
      const fields = listFields(q.fields);
      const limit = q.limit ?? 50;
      const page = await listSessions(db, {
        limit,
        errorChars: LIST_ERROR_MESSAGE_CHARS,
        ...(q.status ? { status: q.status } : {}),
        ...(q.type ? { type: q.type } : {}),
        ...(q.runnerId ? { runnerId: q.runnerId } : {}),
        ...(q.scheduleId ? { scheduleId: q.scheduleId } : {}),
        ...(q.tag ? { tag: q.tag } : {}),
        ...(q.cursor ? { before: decodeCursor(q.cursor) } : {}),
      });
      let rows = page.rows;
      let more = page.more;
      // Summaries by default; fields asked for are read within a per-field and a per-page byte bound.
      const extra = await listSessionColumns(
        db,
        rows.map((r) => r.id),
        fields.map((f) => LIST_FIELD_COLUMNS[f]),
        { maxFieldBytes: LIST_FIELD_MAX_BYTES, maxPageBytes: LIST_PAGE_MAX_BYTES },
      );
      if (extra.kept < rows.length) {
        rows = rows.slice(0, extra.kept);
        more = true;
      }
      const last = rows[rows.length - 1];
      return {
        items: rows.map((r) => sessionSummaryView(r, extra.rows.get(r.id), fields)),
        nextCursor: more && last ? encodeCursor(last.id) : null,
      };
    },
  );

  app.get(
    '/v1/sessions/:id',
    {
      config: { scope: 'read' },
      schema: {
        params: IdParams,
        headers: Type.Object({ 'x-lease-token': Type.Optional(Type.String({ maxLength: 100 })) }),
        response: { 200: SessionView },
      },
    },
    async (req) => {
      const row = await getSession(db, req.params.id);
      // A runner token reads only the sessions it holds: it must show the current lease.
      if (
        req.caller === 'runner' &&
        !(row.status === 'running' && row.lease_token === req.headers['x-lease-token'])
      ) {
        throw new SfwError('FORBIDDEN', 'a runner may read only the sessions it holds (send X-Lease-Token)');
      }
      return sessionView(row);
    },
  );

  app.get(
    '/v1/sessions/:id/wait',
    {
      config: { scope: 'client' },
      schema: { params: IdParams, querystring: WaitQuery, response: { 200: SessionView } },
    },
    async (req, reply) => {
      const deadline = Date.now() + (req.query.timeoutMs ?? 30_000);
      const gone = requestGone(reply.raw);
      for (;;) {
        const row = await getSession(db, req.params.id);
        const left = deadline - Date.now();
        if (isTerminal(row.status) || left <= 0 || gone.aborted) return sessionView(row);
        await app.waiters.waitForDone(row.id, Math.min(left, app.waiters.pollMs), gone);
      }
    },
  );

  app.post(
    '/v1/sessions/:id/cancel',
    { config: { scope: 'client' }, schema: { params: IdParams, response: { 200: SessionView } } },
    async (req) => sessionView(await cancelSession(db, req.params.id)),
  );

  app.post(
    '/v1/sessions/:id/complete',
    {
      config: { scope: 'runner' },
      schema: { params: IdParams, body: CompleteBody, response: { 200: SessionView } },
    },
    async (req) => {
      const { completion: b, replaced } = storableCompletion(req.body);
      if (replaced > 0)
        req.log.warn(
          { sessionId: req.params.id, replaced },
          'characters Postgres cannot store replaced with U+FFFD',
        );
      const row = await completeSession(db, req.params.id, b);
      return sessionView(row);
    },
  );
}
