import type { RunnerStatus } from '../core/types.js';
import { withTransaction, type Db, type Queryable } from './db.js';

/**
 * Session types as runners register them (session_types): each runner's types with the JSON Schema of
 * their input and their defaults. The rule of which registration a type has (its schema and defaults),
 * used by enqueue and by GET /v1/types alike: the newest schema (by when it was first registered for the
 * type) among live runners; with no live runner, the newest one of all, so a type whose runners are gone
 * keeps being checked.
 */

/** Sent when a registration commits: every API replica forgets the type schemas it looked up. */
export const TYPES_CHANNEL = 'sfw_types';

export interface TypeRegistration {
  name: string;
  schema: Record<string, unknown> | null;
  schemaHash: string | null;
  note: string | null;
  /** The type's defaults for a session enqueued without them (absent or null: the API's). */
  timeoutMs?: number | null;
  maxAttempts?: number | null;
}

export interface TypeRegistrationRow {
  type: string;
  runner_id: string;
  schema_hash: string | null;
  note: string | null;
  timeout_ms: number | null;
  max_attempts: number | null;
  registered_at: Date;
  schema_since: Date;
  /** runner_health.status; null when the runner's row is gone. */
  runner_status: RunnerStatus | null;
  /** Heartbeat within the live window and not stopped. */
  live: boolean;
  /** Still in the fleet view (the runner-retention rule of listRunners). */
  listed: boolean;
}

/** Registrations ranked by the rule: per type, the first row in WINNER_ORDER holds the type's schema. */
const RANKED = `
  SELECT t.type, t.runner_id, t.schema_hash, t.note, t.timeout_ms, t.max_attempts, t.registered_at, t.schema_since,
         r.status AS runner_status,
         coalesce(r.status <> 'stopped' AND r.last_heartbeat > now() - make_interval(secs => $1 / 1000.0), false) AS live,
         coalesce(r.status <> 'stopped' OR r.last_heartbeat > now() - make_interval(secs => $2 / 1000.0), false) AS listed
  FROM session_types t LEFT JOIN runner_health r ON r.runner_id = t.runner_id`;
const WINNER_ORDER = 'type, live DESC, schema_since DESC, registered_at DESC, runner_id';

export interface TypeWindows {
  /** A runner is live when its last heartbeat is this recent (and it has not stopped). */
  liveMs: number;
  /** A stopped runner leaves the fleet view after this long. */
  retentionMs: number;
}

/**
 * Replaces a runner's registrations with `types`, in one transaction; then prunes registrations of runners
 * gone from the fleet view except the newest of each type. Answers each type's stored hash.
 */
export async function registerSessionTypes(
  db: Db,
  runnerId: string,
  types: TypeRegistration[],
  windows: TypeWindows,
): Promise<{ type: string; schema_hash: string | null }[]> {
  return withTransaction(db, async (tx) => {
    await tx.query('DELETE FROM session_types WHERE runner_id = $1 AND NOT (type = ANY ($2::text[]))', [
      runnerId,
      types.map((t) => t.name),
    ]);
    const { rows } = await tx.query<{ type: string; schema_hash: string | null }>(
      `INSERT INTO session_types AS s (type, runner_id, schema, schema_hash, note, timeout_ms, max_attempts,
                                       registered_at, schema_since)
       SELECT n.name, $1, n.schema, n.hash, n.note, n.timeout_ms, n.max_attempts, now(),
              coalesce((SELECT min(o.schema_since) FROM session_types o
                        WHERE o.type = n.name AND o.schema_hash IS NOT DISTINCT FROM n.hash), now())
       FROM jsonb_to_recordset($2::jsonb)
         AS n(name text, schema jsonb, hash text, note text, timeout_ms integer, max_attempts integer)
       ON CONFLICT (type, runner_id) DO UPDATE SET
         schema = EXCLUDED.schema, schema_hash = EXCLUDED.schema_hash, note = EXCLUDED.note,
         timeout_ms = EXCLUDED.timeout_ms, max_attempts = EXCLUDED.max_attempts,
         registered_at = now(),
         schema_since = CASE WHEN s.schema_hash IS NOT DISTINCT FROM EXCLUDED.schema_hash
                             THEN s.schema_since ELSE EXCLUDED.schema_since END
       RETURNING type, schema_hash`,
      [
        runnerId,
        JSON.stringify(
          types.map((t) => ({
            name: t.name,
            schema: t.schema,
            hash: t.schemaHash,
            note: t.note,
            timeout_ms: t.timeoutMs ?? null,
            max_attempts: t.maxAttempts ?? null,
          })),
        ),
      ],
    );
    // Registrations of runners that left the fleet view, but the newest of each type (its last schema).
    // Rows another registration holds are skipped: the next one prunes them.
    await tx.query(
      `DELETE FROM session_types d USING (
         SELECT x.type, x.runner_id FROM (
           SELECT k.type, k.runner_id, k.listed,
                  row_number() OVER (PARTITION BY k.type ORDER BY k.schema_since DESC, k.registered_at DESC, k.runner_id) AS n
           FROM (${RANKED}) k) x
         WHERE NOT x.listed AND x.n > 1 AND x.runner_id <> $3) g
       WHERE d.type = g.type AND d.runner_id = g.runner_id
         AND d.ctid IN (SELECT l.ctid FROM session_types l
                        WHERE l.type = g.type AND l.runner_id = g.runner_id FOR UPDATE SKIP LOCKED)`,
      [windows.liveMs, windows.retentionMs, runnerId],
    );
    await tx.query(`SELECT pg_notify('${TYPES_CHANNEL}', '')`);
    return rows;
  });
}

/** Whether a runner has any registration (else it is asked to register again: a fresh database). */
export async function runnersWithTypeRegistrations(db: Queryable, runnerIds: string[]): Promise<Set<string>> {
  const { rows } = await db.query<{ runner_id: string }>(
    'SELECT DISTINCT runner_id FROM session_types WHERE runner_id = ANY($1::text[])',
    [runnerIds],
  );
  return new Set(rows.map((r) => r.runner_id));
}

/** What enqueue needs of a registered type: its schema's hash (null: none) and its defaults (null: the API's). */
export interface ResolvedType {
  schemaHash: string | null;
  timeoutMs: number | null;
  maxAttempts: number | null;
}

/** Each registered type's schema hash and defaults by the rule, in one query; absent: unregistered. */
export async function resolveTypes(
  db: Queryable,
  types: string[],
  windows: TypeWindows,
): Promise<Map<string, ResolvedType>> {
  const { rows } = await db.query<{
    type: string;
    schema_hash: string | null;
    timeout_ms: number | null;
    max_attempts: number | null;
  }>(
    `SELECT DISTINCT ON (type) type, schema_hash, timeout_ms, max_attempts
     FROM (${RANKED} WHERE t.type = ANY ($3::text[])) k
     ORDER BY ${WINNER_ORDER}`,
    [windows.liveMs, windows.retentionMs, types],
  );
  return new Map(
    rows.map((r) => [
      r.type,
      { schemaHash: r.schema_hash, timeoutMs: r.timeout_ms, maxAttempts: r.max_attempts },
    ]),
  );
}

/** One stored schema by its hash. */
export async function typeSchemaByHash(
  db: Queryable,
  hash: string,
): Promise<Record<string, unknown> | undefined> {
  const { rows } = await db.query<{ schema: Record<string, unknown> }>(
    'SELECT schema FROM session_types WHERE schema_hash = $1 LIMIT 1',
    [hash],
  );
  return rows[0]?.schema;
}

/** Every registration, each type's winner first (then the other runners by the rule's order). */
export async function listTypeRegistrations(
  db: Queryable,
  windows: TypeWindows,
): Promise<TypeRegistrationRow[]> {
  const { rows } = await db.query<TypeRegistrationRow>(`${RANKED} ORDER BY ${WINNER_ORDER}`, [
    windows.liveMs,
    windows.retentionMs,
  ]);
  return rows;
}

/** The schemas of these hashes. */
export async function typeSchemas(
  db: Queryable,
  hashes: string[],
): Promise<Map<string, Record<string, unknown>>> {
  if (hashes.length === 0) return new Map();
  const { rows } = await db.query<{ schema_hash: string; schema: Record<string, unknown> }>(
    `SELECT DISTINCT ON (schema_hash) schema_hash, schema FROM session_types
     WHERE schema_hash = ANY ($1::text[])`,
    [hashes],
  );
  return new Map(rows.map((r) => [r.schema_hash, r.schema]));
}
