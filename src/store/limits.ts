import { LeaseLostError, NotFoundError } from '../core/errors.js';
import { withTransaction, type Db, type Queryable } from './db.js';

/**
 * Per-key limits (table `limits`, migration 0006): at most `concurrency` sessions of a key running and at
 * most `per_minute` claimed in any rolling minute, across every runner. The claim (sfw_claim_many) enforces
 * them; these queries set, read and drop them, with the live numbers of each key.
 */

export interface LimitRow {
  key: string;
  concurrency: number | null;
  per_minute: number | null;
  created_at: Date;
  updated_at: Date;
  /** Sessions of the key running now. */
  running: number;
  /** Queued, due sessions of the key held back by its limit. */
  waiting: number;
  /** Claims of the key within the last minute (recorded while it has a per_minute). */
  claimed_last_minute: number;
  /** When the held sessions are next looked at (the window moving on, a recheck), null when none are held. */
  release_at: Date | null;
  /** No session of the key is claimed before this (the site answered 429/503 with Retry-After). */
  backoff_until: Date | null;
}

const SELECT_LIMITS = `
  SELECT l.key, l.concurrency, l.per_minute, l.created_at, l.updated_at, l.release_at,
         CASE WHEN l.backoff_until > now() THEN l.backoff_until END AS backoff_until,
         (SELECT count(*) FROM session_running r WHERE r.concurrency_key = l.key)::integer AS running,
         (SELECT count(*) FROM session_held h WHERE h.concurrency_key = l.key)::integer AS waiting,
         (SELECT count(*) FROM unnest(l.recent) t WHERE t > clock_timestamp() - sfw_limit_window())::integer
           AS claimed_last_minute
  FROM limits l`;

export interface LimitChange {
  concurrency?: number | null;
  perMinute?: number | null;
}

/**
 * Sets a key's limit (created or replaced: a field left out is no bound). The next claim looks at the
 * key's held sessions again, so a raised limit lets them run at once.
 */
export async function putLimit(db: Db, key: string, change: LimitChange): Promise<LimitRow> {
  await db.query(
    `INSERT INTO limits AS l (key, concurrency, per_minute, release_at)
     VALUES ($1, $2, $3, now())
     ON CONFLICT (key) DO UPDATE SET concurrency = excluded.concurrency, per_minute = excluded.per_minute,
       release_at = now(), updated_at = now()`,
    [key, change.concurrency ?? null, change.perMinute ?? null],
  );
  await db.query(`SELECT pg_notify('sfw_sessions', '')`);
  return getLimit(db, key);
}

export async function getLimit(db: Queryable, key: string): Promise<LimitRow> {
  const { rows } = await db.query<LimitRow>(`${SELECT_LIMITS} WHERE l.key = $1`, [key]);
  if (!rows[0]) throw new NotFoundError(`limit ${key}`);
  return rows[0];
}

export async function listLimits(db: Queryable): Promise<LimitRow[]> {
  const { rows } = await db.query<LimitRow>(`${SELECT_LIMITS} ORDER BY l.key`);
  return rows;
}

/** Drops a key's limit; its held sessions go back to the queue at once. Answers the limit as it was. */
export async function deleteLimit(db: Db, key: string): Promise<LimitRow> {
  return withTransaction(db, async (client) => {
    const { rows } = await client.query<LimitRow>(`${SELECT_LIMITS} WHERE l.key = $1 FOR UPDATE OF l`, [key]);
    if (!rows[0]) throw new NotFoundError(`limit ${key}`);
    await client.query('DELETE FROM limits WHERE key = $1', [key]);
    await client.query('SELECT sfw_release_all($1)', [key]);
    return rows[0];
  });
}

export interface LimitGauge {
  key: string;
  running: number;
  waiting: number;
  /** Seconds left of the key's backoff (0: none). */
  backoff_s: number;
}

/**
 * Per key with a row in `limits` (a limit, or a backoff a site asked for), for /metrics: running and
 * waiting sessions, and the backoff left. Keys without one are not counted.
 */
export async function limitGauges(db: Queryable): Promise<LimitGauge[]> {
  const { rows } = await db.query<LimitGauge>(
    `SELECT l.key,
            (SELECT count(*) FROM session_running r WHERE r.concurrency_key = l.key)::integer AS running,
            (SELECT count(*) FROM session_held h WHERE h.concurrency_key = l.key)::integer AS waiting,
            greatest(0, coalesce(extract(epoch FROM l.backoff_until - now()), 0))::float8 AS backoff_s
     FROM limits l ORDER BY l.key`,
  );
  return rows;
}

/** Longest backoff a site may ask for: a Retry-After beyond it is held to it. */
export const MAX_BACKOFF_MS = 3_600_000;

/**
 * A running session's site said to come back after `retryAfterMs` (HTTP 429 or 503 with Retry-After):
 * fenced by the session's lease, its key claims nothing until then. Answers the key (null: the session has
 * none, nothing changed) and its backoff time. Throws LeaseLostError when the lease is not held.
 */
export async function recordBackoff(
  db: Queryable,
  ref: { sessionId: string; runnerId: string; leaseToken: string },
  retryAfterMs: number,
): Promise<{ key: string | null; backoffUntil: Date | null }> {
  const ms = Math.min(Math.max(0, retryAfterMs), MAX_BACKOFF_MS);
  const { rows } = await db.query<{ key: string; backoff_until: Date }>(
    `SELECT * FROM sfw_back_off($1, $2, $3, now() + make_interval(secs => $4 / 1000.0))`,
    [ref.sessionId, ref.runnerId, ref.leaseToken, ms],
  );
  if (rows[0]) return { key: rows[0].key, backoffUntil: rows[0].backoff_until };
  const { rows: s } = await db.query<{ held: boolean }>(
    `SELECT (lease_token IS NOT DISTINCT FROM $2::uuid AND claimed_by IS NOT DISTINCT FROM $3 AND status = 'running') AS held
     FROM sessions WHERE id = $1`,
    [ref.sessionId, ref.leaseToken, ref.runnerId],
  );
  if (!s[0]) throw new NotFoundError(`session ${ref.sessionId}`);
  if (!s[0].held) throw new LeaseLostError(ref.sessionId);
  return { key: null, backoffUntil: null };
}
