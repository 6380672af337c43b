import type { SessionStatus } from '../core/types.js';
import type { Db, Queryable } from './db.js';
import { CANCEL_SET, DONE_CHANNEL } from './sessions.js';

/**
 * Queries over many sessions at once, picked by tag, status, type, ids or age: a tag's counts, the
 * streamed export, the bulk cancel. A tag is matched through the partial GIN index of migration 0008
 * (`cardinality(tags) > 0` beside `tags @>` lets the planner use it).
 */

export interface SessionMatch {
  tag?: string;
  status?: SessionStatus;
  type?: string;
  ids?: string[];
  /** Created at or after. */
  since?: Date;
}

/** The WHERE conditions of a match, their values appended to `params`. */
function matchWhere(m: SessionMatch, params: unknown[]): string[] {
  const where: string[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replaceAll('?', `$${params.length}`));
  };
  if (m.tag !== undefined) add('cardinality(tags) > 0 AND tags @> ARRAY[?::text]', m.tag);
  if (m.status !== undefined) add('status = ?', m.status);
  if (m.type !== undefined) add('type = ?', m.type);
  if (m.ids !== undefined) add('id = ANY(?::uuid[])', m.ids);
  if (m.since !== undefined) add('created_at >= ?::timestamptz', m.since.toISOString());
  return where;
}

export interface TagCountRow {
  status: SessionStatus;
  n: number;
  oldest: Date;
  newest: Date;
  last_finished: Date | null;
}

/** The statement of tagCounts ($1: the tag), named so its plan can be checked. */
export const TAG_COUNTS_SQL = `SELECT status, count(*)::integer AS n, min(created_at) AS oldest,
       max(created_at) AS newest, max(finished_at) AS last_finished
FROM sessions WHERE cardinality(tags) > 0 AND tags @> ARRAY[$1::text] GROUP BY status`;

/** A tag's sessions by status, with the creation times of the oldest and newest: reads the tag's rows only. */
export async function tagCounts(db: Queryable, tag: string): Promise<TagCountRow[]> {
  const { rows } = await db.query<TagCountRow>(TAG_COUNTS_SQL, [tag]);
  return rows;
}

export interface BulkCancelOutcome {
  /** Queued sessions now cancelled. */
  cancelled: number;
  /** Running sessions asked to stop (their runners abort them at the next heartbeat). */
  requested: number;
}

const DEADLOCK = '40P01';

/**
 * Cancels every queued or running session of the match in one statement, as cancelSession does one
 * (CANCEL_SET): queued ones at once, running ones flagged. A running session already flagged is not
 * counted again, so a repeat answers what it changed: nothing. Rows are locked in id order; a claim locks
 * a session's ready row before the session, so the statement may meet a claim in the other order and be
 * chosen as a deadlock's victim: it rolled back whole, and is run again.
 */
export async function cancelMatching(db: Queryable, m: SessionMatch): Promise<BulkCancelOutcome> {
  const params: unknown[] = [];
  const where = [
    ...matchWhere(m, params),
    "(status = 'queued' OR (status = 'running' AND NOT cancel_requested))",
  ];
  const sql = `WITH t AS (
       SELECT id FROM sessions WHERE ${where.join(' AND ')} ORDER BY id FOR NO KEY UPDATE
     ), s AS (
       UPDATE sessions x SET ${CANCEL_SET}
       FROM t WHERE x.id = t.id AND x.status IN ('queued', 'running')
       RETURNING x.id, x.status
     ), done AS (
       SELECT pg_notify('${DONE_CHANNEL}', id::text) FROM s WHERE status = 'cancelled'
     )
     SELECT count(*) FILTER (WHERE status = 'cancelled')::integer AS cancelled,
            count(*) FILTER (WHERE status = 'running')::integer AS requested
     FROM s, (SELECT count(*) FROM done) d`;
  for (let attempt = 1; ; attempt++) {
    try {
      const { rows } = await db.query<BulkCancelOutcome>(sql, params);
      return rows[0] ?? { cancelled: 0, requested: 0 };
    } catch (err) {
      if ((err as { code?: string }).code !== DEADLOCK || attempt >= 5) throw err;
    }
  }
}

/** One exported session: the columns of the export, result as its JSON text. */
export interface ExportRow {
  id: string;
  type: string;
  status: SessionStatus;
  tags: string[];
  priority: number;
  created_at: Date;
  run_at: Date;
  claimed_at: Date | null;
  finished_at: Date | null;
  attempt: number;
  max_attempts: number;
  claimed_by: string | null;
  /** The result as stored JSON text (null: none). */
  result: string | null;
  error_message: string | null;
}

/** How long an export's transaction may sit idle (its reader not reading) before the server ends it. */
const EXPORT_IDLE_TIMEOUT_MS = 120_000;

/**
 * Every session of the match, oldest first, in chunks of `chunkSize` rows from a server-side cursor: one
 * dedicated connection, one read-only transaction (so one snapshot, and fine behind PgBouncer in
 * transaction mode), FETCH by FETCH as the consumer asks. Memory holds one chunk whatever the count. Ending
 * the iteration early (the reader went away) closes the cursor and gives the connection back.
 */
export async function* exportSessions(
  db: Db,
  m: SessionMatch,
  chunkSize = 500,
): AsyncGenerator<ExportRow[], void, undefined> {
  const params: unknown[] = [];
  const where = matchWhere(m, params);
  const client = await db.connect();
  let broken = false;
  // A connection the server ends (the idle timeout) errors on its own: kept from crashing the process.
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  let open = false;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    open = true;
    await client.query(`SET LOCAL idle_in_transaction_session_timeout = ${EXPORT_IDLE_TIMEOUT_MS}`);
    await client.query(
      `DECLARE sfw_export NO SCROLL CURSOR FOR
       SELECT id, type, status, tags, priority, created_at, run_at, claimed_at, finished_at, attempt,
              max_attempts, claimed_by, result::text AS result, error_message
       FROM sessions ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id`,
      params,
    );
    for (;;) {
      const { rows } = await client.query<ExportRow>(`FETCH ${chunkSize} FROM sfw_export`);
      if (rows.length > 0) yield rows;
      if (rows.length < chunkSize) break;
    }
    await client.query('COMMIT');
    open = false;
  } finally {
    if (open) await client.query('ROLLBACK').catch(() => (broken = true));
    client.off('error', onError);
    client.release(broken);
  }
}
