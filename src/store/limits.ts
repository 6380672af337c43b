import { NotFoundError } from '../core/errors.js';
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
}

const SELECT_LIMITS = `
  SELECT l.key, l.concurrency, l.per_minute, l.created_at, l.updated_at, l.release_at,
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

/** Per limited key, for /metrics: running and waiting sessions (keys without a limit are not counted). */
export async function limitGauges(
  db: Queryable,
): Promise<{ key: string; running: number; waiting: number }[]> {
  const { rows } = await db.query<{ key: string; running: number; waiting: number }>(
    `SELECT l.key,
            (SELECT count(*) FROM session_running r WHERE r.concurrency_key = l.key)::integer AS running,
            (SELECT count(*) FROM session_held h WHERE h.concurrency_key = l.key)::integer AS waiting
     FROM limits l ORDER BY l.key`,
  );
  return rows;
}
