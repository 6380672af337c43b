import { createHash } from 'node:crypto';
import { uuidv7 } from '../core/ids.js';
import { CompletionConflictError, LeaseLostError, NotFoundError, SfwError } from '../core/errors.js';
import {
  DEFAULT_ARTIFACT_OPTIONS,
  DEFAULT_SESSION_TIMEOUT_MS,
  RUNNER_LOST_MESSAGE,
  UNCONFIRMED_MESSAGE,
  type ArtifactOptions,
  type AttemptRecord,
  type StoredArtifact,
  type SessionStatus,
} from '../core/types.js';
import type {
  BrowserOptions,
  ClaimedSession,
  CompleteBody,
  CompleteItem,
  StateSaveOutcome,
} from '../protocol/schemas.js';
import { withTransaction, type Db, type Queryable } from './db.js';

/** Queries about sessions: enqueue, read, list, claim, lease renewal, completion, cancellation. */

export const SESSIONS_CHANNEL = 'sfw_sessions';
export const DONE_CHANNEL = 'sfw_done';

export interface SessionRow {
  id: string;
  type: string;
  input: unknown;
  status: SessionStatus;
  priority: number;
  created_at: Date;
  updated_at: Date;
  run_at: Date;
  claimed_by: string | null;
  claimed_at: Date | null;
  finished_at: Date | null;
  attempt: number;
  max_attempts: number;
  retry_on: string[];
  timeout_ms: number;
  lease_token: string | null;
  lease_expires_at: Date | null;
  cancel_requested: boolean;
  result: unknown;
  error_message: string | null;
  artifacts: StoredArtifact[];
  artifact_options: ArtifactOptions;
  /** The session's browser options (null: the runner's defaults). */
  browser_options: BrowserOptions | null;
  attempts: AttemptRecord[];
  idempotency_key: string | null;
  /** Set with an idempotency key: the hash of the request that made the session (see requestHash). */
  request_hash: string | null;
  /** The schedule that made it, and the fire time it was made for. */
  schedule_id: string | null;
  scheduled_for: Date | null;
  /** The session's named-state options (null: none). */
  state_options: SessionStateOptions | null;
  /** The key its per-key limits count it under (null: none). */
  concurrency_key: string | null;
  /** What became of its state.save (migration 0007; null: not saved yet, or nothing to save). */
  state_saved: StateSaveOutcome | null;
  /** Its tags (migration 0008; none: []). */
  tags: string[];
}

/** A session's named-state options as stored: the state it starts from and the one it saves. */
export interface SessionStateOptions {
  use?: string;
  save?: string;
  overwrite?: boolean;
}

export interface NewSession {
  type: string;
  input?: unknown;
  priority?: number;
  runAt?: string;
  timeoutMs?: number;
  maxAttempts?: number;
  retryOn?: string[];
  artifacts?: Partial<ArtifactOptions>;
  browser?: BrowserOptions;
  idempotencyKey?: string;
  state?: SessionStateOptions;
  concurrencyKey?: string;
  tags?: string[];
  /**
   * The type's registered defaults, used where the request gives none. Not part of the request: two
   * requests with one idempotency key are the same whatever the type's defaults were at each.
   */
  typeDefaults?: { timeoutMs?: number; maxAttempts?: number };
}

export interface InsertOutcome {
  row: SessionRow;
  created: boolean;
}

/** An idempotency key already names a session that a different request made: nothing was enqueued. */
export class IdempotencyConflictError extends SfwError {
  override readonly name = 'IdempotencyConflictError';
  constructor(
    /** The item (of the ones given to insertSessions) whose key was taken. */
    readonly index: number,
    readonly key: string,
    readonly sessionId: string,
  ) {
    super(
      'CONFLICT',
      `idempotency key "${key}" already made session ${sessionId} from a different request (type, input, priority, runAt, timeoutMs, maxAttempts, retryOn, artifacts or browser differ): repeat that request to get the session again, or use a new key`,
    );
  }
}

/**
 * Enqueues sessions in one statement (one transaction), waking idle runners through NOTIFY. A session whose
 * idempotency key already exists is not inserted again: the existing one is returned with created=false
 * when it was made by the same request (see requestHash), else IdempotencyConflictError is thrown and
 * nothing of the call is enqueued.
 */
export async function insertSessions(db: Db, items: NewSession[]): Promise<InsertOutcome[]> {
  const rows = items.map(newSessionRow);
  // A batch holding a key may meet a conflict after some of its sessions are in: one transaction, so a
  // refused batch leaves nothing behind. One session needs none (refused, it was not inserted).
  if (rows.length > 1 && rows.some((r) => r.idempotency_key !== null))
    return withTransaction(db, (client) => insertRows(client, rows));
  return insertRows(db, rows);
}

/** A session request as the row it becomes: the defaults applied (every insert of sessions uses this). */
export function newSessionRow(s: NewSession): NewRow {
  const row = {
    id: uuidv7(),
    type: s.type,
    input: s.input ?? {},
    priority: s.priority ?? 0,
    run_at: s.runAt ?? null,
    timeout_ms: s.timeoutMs ?? s.typeDefaults?.timeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS,
    max_attempts: s.maxAttempts ?? s.typeDefaults?.maxAttempts ?? 1,
    retry_on: s.retryOn ?? ['error'],
    artifact_options: { ...DEFAULT_ARTIFACT_OPTIONS, ...s.artifacts },
    browser_options: s.browser ?? null,
    idempotency_key: s.idempotencyKey ?? null,
    request_hash: null as string | null,
    state_options: s.state ?? null,
    concurrency_key: s.concurrencyKey ?? null,
    tags: s.tags ?? [],
  };
  if (row.idempotency_key !== null)
    row.request_hash = requestHash({
      ...row,
      timeout_ms: s.timeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS,
      max_attempts: s.maxAttempts ?? 1,
    });
  return row;
}

export interface NewRow {
  id: string;
  type: string;
  input: unknown;
  priority: number;
  run_at: string | null;
  timeout_ms: number;
  max_attempts: number;
  retry_on: string[];
  artifact_options: ArtifactOptions;
  browser_options: BrowserOptions | null;
  idempotency_key: string | null;
  request_hash: string | null;
  state_options: SessionStateOptions | null;
  concurrency_key: string | null;
  tags: string[];
}

/**
 * What makes two enqueue requests the same: the session they describe, with the defaults applied (a
 * field left out equals its default given), the start time as an instant and retryOn as a set.
 */
function requestHash(r: NewRow): string {
  const request = {
    type: r.type,
    input: r.input,
    priority: r.priority,
    runAt: r.run_at === null ? null : new Date(r.run_at).toISOString(),
    timeoutMs: r.timeout_ms,
    maxAttempts: r.max_attempts,
    retryOn: [...new Set(r.retry_on)].sort(),
    artifacts: r.artifact_options,
    // Left out when none, so the hash of a request without browser options is what it was.
    browser: r.browser_options ?? undefined,
    state: r.state_options ?? undefined,
    concurrencyKey: r.concurrency_key ?? undefined,
    tags: r.tags.length > 0 ? r.tags : undefined,
  };
  return createHash('sha256').update(canonicalJson(request)).digest('base64url');
}

/** JSON with every object's keys in order, so equal values give equal text. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => canonicalJson(x ?? null)).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

async function insertRows(db: Queryable, rows: NewRow[]): Promise<InsertOutcome[]> {
  const { rows: inserted } = await db.query<SessionRow>(
    `WITH src AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
         id uuid, type text, input jsonb, priority integer, run_at timestamptz, timeout_ms integer,
         max_attempts integer, retry_on text[], artifact_options jsonb, browser_options jsonb, idempotency_key text,
         request_hash text, state_options jsonb, concurrency_key text, tags text[])
     ), ins AS (
       INSERT INTO sessions (id, type, input, priority, run_at, timeout_ms, max_attempts, retry_on,
                             artifact_options, browser_options, idempotency_key, request_hash, state_options,
                             concurrency_key, tags)
       SELECT id, type, input, priority, coalesce(run_at, now()), timeout_ms, max_attempts, retry_on,
              artifact_options, browser_options, idempotency_key, request_hash, state_options, concurrency_key,
              coalesce(tags, '{}')
       FROM src
       ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
       RETURNING *
     ), wake AS (SELECT pg_notify('${SESSIONS_CHANNEL}', ''))
     SELECT ins.* FROM ins, wake`,
    [JSON.stringify(rows)],
  );
  const byId = new Map(inserted.map((r) => [r.id, r]));
  const missingKeys = rows
    .filter((r) => !byId.has(r.id) && r.idempotency_key !== null)
    .map((r) => r.idempotency_key);
  const existing = new Map<string, SessionRow>();
  if (missingKeys.length > 0) {
    const { rows: found } = await db.query<SessionRow>(
      'SELECT * FROM sessions WHERE idempotency_key = ANY($1)',
      [missingKeys],
    );
    for (const r of found) existing.set(r.idempotency_key ?? '', r);
  }
  return rows.map((r, i) => {
    const created = byId.get(r.id);
    if (created) return { row: created, created: true };
    const prior = existing.get(r.idempotency_key ?? '');
    if (!prior) throw new Error(`session with idempotency key ${r.idempotency_key} vanished during enqueue`);
    // A session enqueued before requests were hashed is answered as before.
    if (prior.request_hash !== null && prior.request_hash !== r.request_hash)
      throw new IdempotencyConflictError(i, r.idempotency_key ?? '', prior.id);
    return { row: prior, created: false };
  });
}

export async function getSession(db: Queryable, id: string): Promise<SessionRow> {
  const { rows } = await db.query<SessionRow>('SELECT * FROM sessions WHERE id = $1', [id]);
  const row = rows[0];
  if (!row) throw new NotFoundError(`session ${id}`);
  return row;
}

export async function findSessions(db: Queryable, ids: string[]): Promise<SessionRow[]> {
  if (ids.length === 0) return [];
  const { rows } = await db.query<SessionRow>('SELECT * FROM sessions WHERE id = ANY($1::uuid[])', [ids]);
  return rows;
}

export interface ListFilter {
  status?: SessionStatus;
  type?: string;
  runnerId?: string;
  scheduleId?: string;
  /** Sessions carrying this tag. */
  tag?: string;
  limit: number;
  /** Id of the last session of the previous page; newest first. */
  before?: string;
  /** Characters of error_message a summary keeps (the last becomes …). */
  errorChars: number;
}

/** A session row as a list reads it: no input, result, attempts or artifacts; error_message cut short. */
export type SessionSummaryRow = Omit<
  SessionRow,
  'input' | 'result' | 'attempts' | 'artifacts' | 'lease_token' | 'request_hash'
>;

/**
 * Newest first by id (UUIDv7 ids are time-ordered): keyset pagination that stays fast on any page. Reads
 * summaries: the big columns (input, result, attempts, artifacts) are not read at all.
 */
export async function listSessions(
  db: Queryable,
  filter: ListFilter,
): Promise<{ rows: SessionSummaryRow[]; more: boolean }> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (filter.status) add('status = ?', filter.status);
  if (filter.type) add('type = ?', filter.type);
  if (filter.runnerId) add('claimed_by = ?', filter.runnerId);
  if (filter.scheduleId) add('schedule_id = ?::uuid', filter.scheduleId);
  // The partial GIN index holds tagged sessions only: the first condition lets the planner use it.
  if (filter.tag) add('cardinality(tags) > 0 AND tags @> ARRAY[?::text]', filter.tag);
  if (filter.before) add('id < ?::uuid', filter.before);
  params.push(filter.errorChars, filter.limit + 1);
  const { rows } = await db.query<SessionSummaryRow>(
    `SELECT id, type, status, priority, created_at, updated_at, run_at, claimed_by, claimed_at, finished_at,
            attempt, max_attempts, retry_on, timeout_ms, lease_expires_at, cancel_requested,
            CASE WHEN length(error_message) > $${params.length - 1}::int
                 THEN left(error_message, $${params.length - 1}::int - 1) || '…' ELSE error_message END AS error_message,
            artifact_options, browser_options, idempotency_key, schedule_id, scheduled_for, state_options,
            concurrency_key, tags
     FROM sessions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${params.length}`,
    params,
  );
  const more = rows.length > filter.limit;
  return { rows: more ? rows.slice(0, filter.limit) : rows, more };
}

/** Columns a list adds only when asked for, each bounded in size. */
export const LIST_COLUMNS = ['input', 'result', 'attempts', 'artifacts', 'error_message'] as const;
export type ListColumn = (typeof LIST_COLUMNS)[number];

export interface ListColumnsOutcome {
  /** How many of the ids (a prefix, at least one) fit the page budget. */
  kept: number;
  /** Per kept id: the columns that fit, and the ones asked for that did not. */
  rows: Map<string, { values: Partial<Record<ListColumn, unknown>>; cut: ListColumn[] }>;
}

/**
 * Reads the big columns of listed sessions within two bounds: a column whose text is over `maxFieldBytes`
 * is not sent (named in `cut`), and the page stops after the session that takes the total over
 * `maxPageBytes`. Sizes are read first (a value stored in more than 16 x the bound is not even
 * decompressed), then only the values that fit.
 */
export async function listSessionColumns(
  db: Queryable,
  ids: string[],
  columns: readonly ListColumn[],
  bounds: { maxFieldBytes: number; maxPageBytes: number },
): Promise<ListColumnsOutcome> {
  const out: ListColumnsOutcome = { kept: ids.length, rows: new Map() };
  if (ids.length === 0 || columns.length === 0) return out;
  const text = (c: ListColumn) => (c === 'error_message' ? c : `${c}::text`);
  const { rows: sizes } = await db.query<Record<string, number | null> & { id: string }>(
    `SELECT id, ${columns
      .map(
        (c) =>
          `CASE WHEN ${c} IS NULL THEN 0 WHEN pg_column_size(${c}) > $2::int * 16 THEN NULL
                ELSE octet_length(${text(c)}) END AS ${c}`,
      )
      .join(', ')}
     FROM sessions WHERE id = ANY($1::uuid[])`,
    [ids, bounds.maxFieldBytes],
  );
  const byId = new Map(sizes.map((r) => [r.id, r]));
  const fits = new Map<ListColumn, string[]>(columns.map((c) => [c, []]));
  let total = 0;
  let kept = 0;
  for (const id of ids) {
    if (kept > 0 && total >= bounds.maxPageBytes) break;
    kept++;
    const row = byId.get(id);
    if (!row) continue;
    const cut: ListColumn[] = [];
    for (const c of columns) {
      const bytes = row[c];
      if (bytes === null || bytes === undefined || bytes > bounds.maxFieldBytes) cut.push(c);
      else {
        total += bytes;
        fits.get(c)!.push(id);
      }
    }
    out.rows.set(id, { values: {}, cut });
  }
  out.kept = kept;
  const { rows: values } = await db.query<Record<string, unknown> & { id: string }>(
    `SELECT id, ${columns.map((c, i) => `CASE WHEN id = ANY($${i + 1}::uuid[]) THEN ${c} END AS ${c}`).join(', ')}
     FROM sessions WHERE id = ANY($${columns.length + 1}::uuid[])`,
    [...columns.map((c) => fits.get(c)!), [...out.rows.keys()]],
  );
  for (const v of values) {
    const entry = out.rows.get(v.id);
    if (!entry) continue;
    for (const c of columns) if (!entry.cut.includes(c)) entry.values[c] = v[c];
  }
  return out;
}

export interface LeaseRef {
  id: string;
  leaseToken: string;
}

export interface ClaimRequest {
  runnerId: string;
  types: string[];
  slots: number;
  maxConcurrency?: number;
  leaseMs: number;
  hostname?: string;
  version?: string;
  startedAt?: string;
}

export interface ExchangeOutcome {
  /** The claimed sessions in claim order, as a JSON array text (sent to the runner as it is). */
  claimedJson: string;
  /** How many sessions were claimed. */
  claimedCount: number;
  /** The claimed sessions, parsed (when the caller needs them). */
  claimed(): ClaimedSession[];
  /** One outcome per completion, in the order given. */
  completed: CompletionOutcome[];
}

/** One runner's part of an exchange: its finished sessions and its claim. */
export interface ExchangeRequest extends ClaimRequest {
  done: CompleteItem[];
}

/**
 * Runners' round trips to the queue in one call and one commit (sfw_exchange_many): each runner's finished
 * sessions, then a claim of up to its `slots` more. The completions free their slots before the claim
 * counts a runner's running sessions. One request per runner; outcomes in the order given.
 */
export async function exchangeMany(db: Queryable, reqs: ExchangeRequest[]): Promise<ExchangeOutcome[]> {
  if (reqs.length === 0) return [];
  const { rows } = await db.query<{
    runner_id: string;
    done_ids: string[] | null;
    done_status: SessionStatus[] | null;
    claimed: string;
    n: number;
  }>(
    `SELECT runner_id, done_ids, done_status, claimed::text AS claimed, json_array_length(claimed) AS n
     FROM sfw_exchange_many($1, $2)`,
    [
      JSON.stringify(
        reqs.map((r) => ({
          runner: r.runnerId,
          done: r.done.length > 0 ? completionItems(r.done) : null,
          types: r.types,
          slots: r.slots,
          max: r.maxConcurrency ?? null,
          hostname: r.hostname ?? null,
          version: r.version ?? null,
          startedAt: r.startedAt ?? null,
        })),
      ),
      reqs[0]!.leaseMs,
    ],
  );
  return Promise.all(
    reqs.map(async (req, i) => {
      const r = rows[i];
      const claimedJson = r?.claimed ?? '[]';
      let parsed: ClaimedSession[] | undefined;
      const accepted = new Map<string, SessionStatus>();
      const statuses = r?.done_status ?? [];
      (r?.done_ids ?? []).forEach((id, k) => accepted.set(id, statuses[k]!));
      return {
        claimedJson,
        claimedCount: r?.n ?? 0,
        claimed: () => (parsed ??= JSON.parse(claimedJson) as ClaimedSession[]),
        completed: req.done.length > 0 ? await outcomes(db, req.done, accepted) : [],
      };
    }),
  );
}

/** One runner's round trip to the queue (see exchangeMany). */
export async function exchange(
  db: Queryable,
  req: ClaimRequest,
  done: CompleteItem[] = [],
): Promise<ExchangeOutcome> {
  const [out] = await exchangeMany(db, [{ ...req, done }]);
  return out!;
}

/** A claim alone (see exchange). Sessions come back in claim order. */
export async function claimSessions(db: Queryable, req: ClaimRequest): Promise<ClaimedSession[]> {
  return (await exchange(db, req)).claimed();
}

/** A runner waiting for work in an API replica's memory. */
export interface WaitingClaim {
  runnerId: string;
  types: string[];
  slots: number;
  maxConcurrency?: number;
}

export interface WaitingOutcome {
  /** Runner id → the sessions it got, as a JSON array text in claim order (sent on as it is). */
  claims: Map<string, string>;
  /** Of the types asked about, those with nothing ready now. */
  emptyTypes: string[];
  /** The earliest time a session scheduled for later becomes due (null: none scheduled). */
  nextRunAt: Date | null;
}

/**
 * Claims for many waiting runners in one call (sfw_claim_waiting), in the order given (longest waiting
 * first): each runner's claim is as atomic and as fenced as its own exchange; a runner whose exchange is
 * running elsewhere is skipped this time.
 */
export async function claimWaiting(
  db: Queryable,
  waiters: WaitingClaim[],
  leaseMs: number,
): Promise<WaitingOutcome> {
  const { rows } = await db.query<{
    runner_id: string | null;
    claimed: string | null;
    empty_types: string[] | null;
    next_run_at: Date | null;
  }>('SELECT runner_id, claimed::text AS claimed, empty_types, next_run_at FROM sfw_claim_waiting($1, $2)', [
    JSON.stringify(
      waiters.map((w) => ({
        runner: w.runnerId,
        types: w.types,
        slots: w.slots,
        max: w.maxConcurrency ?? null,
      })),
    ),
    leaseMs,
  ]);
  const out: WaitingOutcome = { claims: new Map(), emptyTypes: [], nextRunAt: null };
  for (const r of rows) {
    if (r.runner_id !== null && r.claimed !== null) out.claims.set(r.runner_id, r.claimed);
    else {
      out.emptyTypes = r.empty_types ?? [];
      out.nextRunAt = r.next_run_at;
    }
  }
  return out;
}

/**
 * Records a runner's outcome, fenced by the lease token: only the holder of the current lease of a running
 * session can finish it. When the outcome is retryable and attempts remain, the session is queued again
 * with backoff. The same call repeated after success answers the stored session (safe to retry); a different
 * outcome sent with the same lease token is refused (409 CONFLICT) and changes nothing.
 */
export async function completeSession(db: Queryable, id: string, c: CompleteBody): Promise<SessionRow> {
  const [out] = await completeSessions(db, [{ ...c, id }]);
  if (out?.outcome === 'accepted') return getSession(db, id);
  if (out?.outcome === 'not-found') throw new NotFoundError(`session ${id}`);
  if (out?.outcome === 'conflict') throw new CompletionConflictError(id);
  throw new LeaseLostError(id);
}

export type CompletionOutcome =
  | { id: string; outcome: 'accepted'; status: SessionStatus }
  | { id: string; outcome: 'lease-lost' | 'not-found' | 'conflict' };

function completionItems(items: CompleteItem[]) {
  return items.map((c) => ({
    id: c.id,
    leaseToken: c.leaseToken,
    status: c.status,
    result: c.result === undefined ? null : c.result,
    errorMessage: c.errorMessage ?? null,
  }));
}

/**
 * Completions in one call and one commit (sfw_complete), each fenced by its lease token, rows locked in id
 * order so concurrent batches lock alike. A repeat of an accepted completion (its answer was lost on the
 * wire) is answered, not refused.
 */
export async function completeSessions(db: Queryable, items: CompleteItem[]): Promise<CompletionOutcome[]> {
  if (items.length === 0) return [];
  const { rows } = await db.query<{ id: string; status: SessionStatus }>(
    'SELECT id, status FROM sfw_complete($1, NULL)',
    [JSON.stringify(completionItems(items))],
  );
  return outcomes(db, items, new Map(rows.map((r) => [r.id, r.status])));
}

/**
 * Outcome per item; items not accepted now are looked up once (an earlier delivery, a lost lease, gone). A
 * repeat of the completion that ended the lease (same token, same status, error and result) is answered as
 * accepted; a different outcome under the same token is a conflict: the stored one stands.
 */
async function outcomes(
  db: Queryable,
  items: CompleteItem[],
  accepted: Map<string, SessionStatus>,
): Promise<CompletionOutcome[]> {
  const missing = items.filter((c) => !accepted.has(c.id));
  const current = new Map<string, { status: SessionStatus; lease_token: string | null; same: boolean }>();
  if (missing.length > 0) {
    const { rows } = await db.query<{
      id: string;
      status: SessionStatus;
      lease_token: string | null;
      same: boolean;
    }>(
      `SELECT s.id, s.status, s.lease_token,
              (s.attempts -> -1 ->> 'status') IS NOT DISTINCT FROM i.status
              AND (s.attempts -> -1 ->> 'errorMessage') IS NOT DISTINCT FROM i."errorMessage"
              -- A retried attempt keeps no result; a final one keeps the one it was given.
              AND (s.status = 'queued' OR s.result IS NOT DISTINCT FROM i.result) AS same
       FROM jsonb_to_recordset($1::jsonb) AS i(id uuid, status text, result jsonb, "errorMessage" text)
       JOIN sessions s ON s.id = i.id`,
      [JSON.stringify(completionItems(missing))],
    );
    for (const r of rows) current.set(r.id, r);
  }
  return items.map((c): CompletionOutcome => {
    const status = accepted.get(c.id);
    if (status) return { id: c.id, outcome: 'accepted', status };
    const now = current.get(c.id);
    if (!now) return { id: c.id, outcome: 'not-found' };
    if (now.lease_token === c.leaseToken && now.status !== 'running')
      return now.same
        ? { id: c.id, outcome: 'accepted', status: now.status }
        : { id: c.id, outcome: 'conflict' };
    return { id: c.id, outcome: 'lease-lost' };
  });
}

/**
 * What a cancel does to a queued or running session, for one (cancelSession) and for many (cancelMatching):
 * queued → cancelled at once; running → flagged, and the runner aborts it at its next heartbeat.
 */
export const CANCEL_SET = `
         status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
         cancel_requested = true,
         finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
         error_message = CASE WHEN status = 'queued' THEN 'Cancelled while queued' ELSE error_message END,
         updated_at = now()`;

/** Queued → cancelled at once; running → flagged, and the runner aborts it at its next heartbeat. */
export async function cancelSession(db: Queryable, id: string): Promise<SessionRow> {
  const { rows } = await db.query<SessionRow>(
    `WITH s AS (
       UPDATE sessions SET ${CANCEL_SET}
       WHERE id = $1 AND status IN ('queued', 'running')
       RETURNING *
     )
     SELECT s.*, CASE WHEN s.status = 'cancelled' THEN pg_notify('${DONE_CHANNEL}', s.id::text) END FROM s`,
    [id],
  );
  return rows[0] ?? (await getSession(db, id));
}

/**
 * Records an uploaded artifact, fenced by the lease of a running session, in place of one of the same
 * name. Answers the stored entry it replaced (its file is no longer referenced), if any.
 */
export async function addArtifact(
  db: Queryable,
  id: string,
  leaseToken: string,
  info: StoredArtifact,
): Promise<{ replaced: StoredArtifact | null }> {
  const { rows } = await db.query<{ replaced: StoredArtifact | null }>(
    `WITH cur AS (
       SELECT s.id, s.artifacts FROM sessions s
       WHERE s.id = $1 AND s.lease_token = $2::uuid AND s.status = 'running'
       FOR NO KEY UPDATE
     ), u AS (
       UPDATE sessions s SET
         artifacts = (SELECT coalesce(jsonb_agg(a), '[]'::jsonb) FROM jsonb_array_elements(cur.artifacts) a
                      WHERE a->>'name' <> $3) || jsonb_build_array($4::jsonb),
         updated_at = now()
       FROM cur WHERE s.id = cur.id
       RETURNING s.id
     )
     SELECT (SELECT a FROM jsonb_array_elements(cur.artifacts) a WHERE a->>'name' = $3 LIMIT 1) AS replaced
     FROM cur, (SELECT count(*) FROM u) n`,
    [id, leaseToken, info.name, JSON.stringify(info)],
  );
  if (rows.length === 0) {
    await getSession(db, id);
    throw new LeaseLostError(id);
  }
  return { replaced: rows[0]!.replaced };
}

/** Checks that the lease is current without changing anything (before an upload is written to disk). */
export async function assertLease(db: Queryable, id: string, leaseToken: string): Promise<void> {
  const { rows } = await db.query<{ ok: boolean }>(
    `SELECT (lease_token = $2::uuid AND status = 'running') AS ok FROM sessions WHERE id = $1`,
    [id, leaseToken],
  );
  if (!rows[0]) throw new NotFoundError(`session ${id}`);
  if (!rows[0].ok) throw new LeaseLostError(id);
}

/**
 * Hands sessions back to the queue from a stopping runner: fenced, the attempt is not counted against
 * max_attempts, and the hand-back is kept in the attempt history. Sessions cancelled meanwhile end
 * cancelled instead. Returns the ids queued again.
 */
export async function requeueSessions(db: Queryable, runnerId: string, refs: LeaseRef[]): Promise<string[]> {
  if (refs.length === 0) return [];
  const { rows } = await db.query<{ id: string; status: string }>(
    `WITH t AS (
       -- Locked in id order (the locks are taken above the sort), like every writer of running sessions.
       SELECT s.id, s.claimed_at, s.attempt, s.cancel_requested FROM sessions s
       JOIN jsonb_to_recordset($2::jsonb) AS r(id uuid, "leaseToken" uuid) ON s.id = r.id AND s.lease_token = r."leaseToken"
       WHERE s.status = 'running' AND s.claimed_by = $1
       ORDER BY s.id
       FOR UPDATE OF s
     ), u AS (
       -- A session cancelled while it ran ends cancelled: it is never handed to another runner.
       UPDATE sessions x SET
         status = CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'queued' END,
         claimed_by = CASE WHEN t.cancel_requested THEN x.claimed_by END,
         finished_at = CASE WHEN t.cancel_requested THEN now() END,
         error_message = CASE WHEN t.cancel_requested THEN 'Cancelled while running' ELSE x.error_message END,
         lease_token = NULL, lease_expires_at = NULL,
         updated_at = now(),
         attempt = CASE WHEN t.cancel_requested THEN x.attempt ELSE x.attempt - 1 END,
         -- Ready again from now (the queue-age and claim-wait numbers count from here); its next claim is
         -- the same attempt, not a new claim.
         run_at = CASE WHEN t.cancel_requested THEN x.run_at ELSE now() END,
         returned = NOT t.cancel_requested,
         attempts = x.attempts || sfw_attempt(t.attempt, $1::text,
           CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'queued' END,
           CASE WHEN t.cancel_requested THEN 'Cancelled while running'
                ELSE 'Runner stopped: handed back to the queue' END,
           t.claimed_at)
       FROM t WHERE x.id = t.id
       RETURNING x.id, x.status
     ), wake AS (SELECT pg_notify('${SESSIONS_CHANNEL}', ''))
     SELECT u.id, u.status, CASE WHEN u.status = 'cancelled' THEN pg_notify('${DONE_CHANNEL}', u.id::text) END
     FROM u, wake`,
    [runnerId, JSON.stringify(refs)],
  );
  return rows.filter((r) => r.status === 'queued').map((r) => r.id);
}

export interface ReapOutcome {
  /** Claims never confirmed by their runner, back in the queue without spending an attempt. */
  returned: number;
  requeued: number;
  errored: number;
  timedOut: number;
}

/**
 * Recovers sessions whose lease lapsed (the runner stopped heartbeating) and sessions running past their
 * own timeout plus a grace on a live runner. One API replica at a time does this (transaction advisory
 * lock); the UPDATE re-checks status and lease expiry itself, so a completion racing it wins cleanly.
 */
export async function reapSessions(db: Db, graceMs: number): Promise<ReapOutcome | null> {
  return withTransaction(db, async (client) => {
    const { rows: lock } = await client.query<{ ok: boolean }>(
      'SELECT pg_try_advisory_xact_lock(727002) AS ok',
    );
    if (!lock[0]?.ok) return null;
    const { rows } = await client.query<{
      outcome: string;
      n: number;
      runners: string[] | null;
      failed: boolean[] | null;
    }>(
      `WITH t AS (
         SELECT s.id, s.claimed_by, s.claimed_at, s.attempt,
                (s.lease_expires_at < now()) AS lapsed, s.cancel_requested AS cancelled,
                -- Never confirmed: the claim's answer may not have reached the runner. Back to the queue
                -- without spending the attempt, a bounded number of times.
                (s.lease_expires_at < now() AND s.confirmed_at IS NULL AND NOT s.cancel_requested
                 AND s.unconfirmed_returns < sfw_unconfirmed_limit()) AS back,
                (s.lease_expires_at < now()
                 AND sfw_retries('error', s.retry_on, s.attempt, s.max_attempts, s.cancel_requested)) AS retry
         FROM session_running r JOIN sessions s ON s.id = r.id
         WHERE s.status = 'running'
           AND (s.lease_expires_at < now() OR s.claimed_at + make_interval(secs => (s.timeout_ms + $1) / 1000.0) < now())
         ORDER BY s.id
         FOR UPDATE OF s SKIP LOCKED
       ), u AS (
         UPDATE sessions x SET
           -- A session cancelled while it ran ends cancelled, never back in the queue.
           status = CASE WHEN t.back OR t.retry THEN 'queued' WHEN t.cancelled THEN 'cancelled' ELSE 'error' END,
           error_message = CASE WHEN t.back THEN x.error_message
                                WHEN t.lapsed THEN '${RUNNER_LOST_MESSAGE}'
                                ELSE 'Session exceeded its timeout of ' || x.timeout_ms || ' ms and its runner did not end it' END,
           finished_at = CASE WHEN t.back OR t.retry THEN NULL ELSE now() END,
           claimed_by = CASE WHEN t.back OR t.retry THEN NULL ELSE x.claimed_by END,
           run_at = CASE WHEN t.back THEN now() WHEN t.retry THEN now() + sfw_retry_delay(t.attempt) ELSE x.run_at END,
           attempt = CASE WHEN t.back THEN x.attempt - 1 ELSE x.attempt END,
           unconfirmed_returns = x.unconfirmed_returns + CASE WHEN t.back THEN 1 ELSE 0 END,
           returned = t.back,
           -- Cleared so a late completion with the old token gets 409, not the answer to a repeat.
           lease_token = NULL,
           lease_expires_at = NULL,
           updated_at = now(),
           attempts = x.attempts || sfw_attempt(t.attempt, t.claimed_by,
             CASE WHEN t.back THEN 'queued' ELSE 'error' END,
             CASE WHEN t.back THEN '${UNCONFIRMED_MESSAGE}'
                  WHEN t.lapsed THEN '${RUNNER_LOST_MESSAGE}' ELSE 'Session exceeded its timeout' END,
             t.claimed_at)
         FROM t
         WHERE x.id = t.id AND x.status = 'running'
           AND (x.lease_expires_at < now() OR x.claimed_at + make_interval(secs => (x.timeout_ms + $1) / 1000.0) < now())
         RETURNING x.id, x.status, t.lapsed, t.back, t.claimed_by
       ), done AS (
         SELECT pg_notify('${DONE_CHANNEL}', id::text) FROM u WHERE status <> 'queued'
       ), wake AS (
         SELECT pg_notify('${SESSIONS_CHANNEL}', '') FROM (SELECT 1 FROM u WHERE status = 'queued' LIMIT 1) q
       )
       SELECT CASE WHEN back THEN 'returned' WHEN status = 'queued' THEN 'requeued' WHEN lapsed THEN 'errored'
                   ELSE 'timedOut' END AS outcome,
              count(*)::integer AS n,
              -- A returned session did not run an attempt: it adds nothing to its runner's totals.
              array_agg(claimed_by) FILTER (WHERE NOT back) AS runners,
              array_agg(status <> 'cancelled') FILTER (WHERE NOT back) AS failed
       FROM u, (SELECT count(*) FROM done) d, (SELECT count(*) FROM wake) w GROUP BY 1`,
      [graceMs],
    );
    // Runner totals after the sessions and their statistics (every writer's lock order: sessions, then
    // statistics, then runner_health).
    const runners = rows.flatMap((r) => r.runners ?? []);
    const failed = rows.flatMap((r) => r.failed ?? []);
    if (runners.length > 0)
      await client.query(
        `UPDATE runner_health r SET total_sessions_executed = r.total_sessions_executed + c.n,
           total_failures = r.total_failures + c.f
         FROM (SELECT by, count(*) AS n, count(*) FILTER (WHERE failed) AS f
               FROM unnest($1::text[], $2::boolean[]) AS b(by, failed) GROUP BY by ORDER BY by) c
         WHERE r.runner_id = c.by`,
        [runners, failed],
      );
    const out: ReapOutcome = { returned: 0, requeued: 0, errored: 0, timedOut: 0 };
    for (const r of rows) out[r.outcome as keyof ReapOutcome] = r.n;
    return out;
  });
}
