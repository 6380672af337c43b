import { LeaseLostError, NotFoundError, SfwError } from '../core/errors.js';
import type { StateOptions, StateSaveOutcome } from '../protocol/schemas.js';
import { withTransaction, type Db, type Queryable } from './db.js';

/**
 * Named session states (table session_states): versions saved by sessions under their lease, the newest
 * live one read by a session that uses the name. A version past its expires_at is never read.
 */

export interface StateVersionRow {
  name: string;
  version: number;
  size: number;
  encrypted: boolean;
  key_id: string | null;
  saved_by_session: string | null;
  saved_at: Date;
  expires_at: Date | null;
}

export interface StoredStateRow extends StateVersionRow {
  data: Buffer;
}

const LIVE = '(expires_at IS NULL OR expires_at > now())';
const VERSION_COLUMNS = 'name, version, size, encrypted, key_id, saved_by_session, saved_at, expires_at';

/** The session's state options, if it holds its lease (else LeaseLostError; an unknown id NotFoundError). */
async function heldSession(
  db: Queryable,
  sessionId: string,
  runnerId: string,
  leaseToken: string,
  lock: boolean,
): Promise<{ options: StateOptions | null; claimedAt: Date }> {
  const { rows } = await db.query<{ ok: boolean; state_options: StateOptions | null; claimed_at: Date }>(
    `SELECT (lease_token = $2::uuid AND status = 'running' AND claimed_by = $3) AS ok, state_options, claimed_at
     FROM sessions WHERE id = $1 ${lock ? 'FOR NO KEY UPDATE' : ''}`,
    [sessionId, leaseToken, runnerId],
  );
  const row = rows[0];
  if (!row) throw new NotFoundError(`session ${sessionId}`);
  if (!row.ok) throw new LeaseLostError(sessionId);
  return { options: row.state_options, claimedAt: row.claimed_at };
}

/** The names a session's state options give (for the API to check before it reads or seals). */
export async function sessionStateOptions(
  db: Queryable,
  sessionId: string,
  runnerId: string,
  leaseToken: string,
): Promise<StateOptions | null> {
  return (await heldSession(db, sessionId, runnerId, leaseToken, false)).options;
}

/**
 * The newest live version of the state the session uses (`state.use`), read under the session's lease:
 * a runner reads only the state its own current session names.
 */
export async function stateForSession(
  db: Queryable,
  sessionId: string,
  runnerId: string,
  leaseToken: string,
): Promise<StoredStateRow> {
  const { options } = await heldSession(db, sessionId, runnerId, leaseToken, false);
  const name = options?.use;
  if (name === undefined)
    throw new SfwError('CONFLICT', `session ${sessionId} uses no named state (its state.use is not set)`);
  const { rows } = await db.query<StoredStateRow>(
    `SELECT ${VERSION_COLUMNS}, data FROM session_states WHERE name = $1 AND ${LIVE}
     ORDER BY version DESC LIMIT 1`,
    [name],
  );
  if (!rows[0]) throw new NotFoundError(`state "${name}" (never saved, deleted or expired)`);
  return rows[0];
}

export interface StateSave {
  sessionId: string;
  runnerId: string;
  leaseToken: string;
  /** The name the API sealed the data for: must still be the session's `state.save`. */
  name: string;
  data: Buffer;
  size: number;
  encrypted: boolean;
  keyId: string | null;
  /** The version of this name the session started from (its `use`). */
  seenVersion: number | undefined;
  /** The default lifetime when the session gives no `state.ttlMs` (STATE_TTL_MS). */
  defaultTtlMs: number | undefined;
  /** Versions kept per name. */
  keep: number;
}

/**
 * Saves a session's state as a new version, fenced by its lease in the same transaction (a lost lease:
 * LeaseLostError, nothing stored). When another session saved the name after this attempt was claimed
 * (and it is not the version this session started from), the newer version is kept unless the session
 * asked `overwrite`. Either way the outcome is recorded on the session (`state_saved`). Saves of one
 * name are serialized by a transaction-level advisory lock; versions past `keep` are deleted.
 */
export async function saveSessionState(db: Db, s: StateSave): Promise<StateSaveOutcome> {
  const outcome = await withTransaction(db, async (client) => {
    const { options, claimedAt } = await heldSession(client, s.sessionId, s.runnerId, s.leaseToken, true);
    if (options?.save !== s.name)
      throw new SfwError('CONFLICT', `session ${s.sessionId} saves no state named "${s.name}"`);
    await client.query(`SELECT pg_advisory_xact_lock(hashtextextended('sfw_state:' || $1, 0))`, [s.name]);
    const { rows: newest } = await client.query<{
      version: number;
      saved_at: Date;
      saved_by_session: string | null;
      live: boolean;
    }>(
      `SELECT version, saved_at, saved_by_session, ${LIVE} AS live FROM session_states WHERE name = $1
       ORDER BY version DESC LIMIT 1`,
      [s.name],
    );
    const head = newest[0];
    let result: StateSaveOutcome;
    if (
      head?.live &&
      !options.overwrite &&
      head.saved_by_session !== s.sessionId &&
      head.saved_at > claimedAt &&
      head.version !== s.seenVersion
    ) {
      result = {
        name: s.name,
        saved: false,
        version: head.version,
        message: `not saved: session ${head.saved_by_session ?? '(unknown)'} saved version ${head.version} of "${s.name}" after this session started (state.overwrite: true saves anyway)`,
      };
    } else {
      const version = (head?.version ?? 0) + 1;
      const ttlMs = options.ttlMs ?? s.defaultTtlMs;
      await client.query(
        `INSERT INTO session_states (name, version, data, size, encrypted, key_id, saved_by_session, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8::bigint IS NULL THEN NULL
                                                 ELSE now() + $8::bigint * interval '1 millisecond' END)`,
        [s.name, version, s.data, s.size, s.encrypted, s.keyId, s.sessionId, ttlMs ?? null],
      );
      await client.query(
        `DELETE FROM session_states WHERE name = $1 AND (version <= $2::integer - $3::integer OR NOT ${LIVE})`,
        [s.name, version, s.keep],
      );
      result = { name: s.name, saved: true, version };
    }
    await client.query(`UPDATE sessions SET state_saved = $2::jsonb, updated_at = now() WHERE id = $1`, [
      s.sessionId,
      JSON.stringify(result),
    ]);
    return result;
  });
  // Expired versions of other names go too: states are credentials, not kept past their time.
  await db.query(`DELETE FROM session_states WHERE expires_at <= now()`).catch(() => undefined);
  return outcome;
}

/** Each name's newest live version. */
export async function listStates(db: Queryable): Promise<StateVersionRow[]> {
  const { rows } = await db.query<StateVersionRow>(
    `SELECT DISTINCT ON (name) ${VERSION_COLUMNS} FROM session_states WHERE ${LIVE}
     ORDER BY name, version DESC`,
  );
  return rows;
}

/** A name's live versions, newest first (NotFoundError when none). */
export async function getStateVersions(db: Queryable, name: string): Promise<StateVersionRow[]> {
  const { rows } = await db.query<StateVersionRow>(
    `SELECT ${VERSION_COLUMNS} FROM session_states WHERE name = $1 AND ${LIVE} ORDER BY version DESC`,
    [name],
  );
  if (rows.length === 0) throw new NotFoundError(`state "${name}"`);
  return rows;
}

/** Deletes every version of a name; NotFoundError when it has no live one. */
export async function deleteState(db: Db, name: string): Promise<number> {
  return withTransaction(db, async (client) => {
    await client.query(`SELECT pg_advisory_xact_lock(hashtextextended('sfw_state:' || $1, 0))`, [name]);
    const { rows } = await client.query<{ live: boolean }>(
      `DELETE FROM session_states WHERE name = $1 RETURNING ${LIVE} AS live`,
      [name],
    );
    if (!rows.some((r) => r.live)) throw new NotFoundError(`state "${name}"`);
    return rows.length;
  });
}
