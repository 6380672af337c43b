import type { Db, Queryable } from '../../src/store/db.js';
import type { ClaimedSession } from '../../src/protocol/schemas.js';
import type { ClaimRequest } from '../../src/store/sessions.js';

/**
 * Bulk fixtures and plans for the benchmarks and the plan tests: history and backlog inserted in one
 * statement each, far faster than the API, and the claim's plan. Not part of the product.
 */

/** Inserts `count` finished sessions of `type`, created over the last `count` seconds (one statement). */
export async function seedFinishedSessions(db: Queryable, type: string, count: number): Promise<void> {
  if (count <= 0) return;
  await db.query(
    `INSERT INTO sessions (id, type, input, status, created_at, updated_at, run_at, claimed_by, claimed_at,
                           finished_at, attempt, lease_token, result)
     SELECT gen_random_uuid(), $1, jsonb_build_object('i', g),
            CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
            t, t, t, 'seed-runner-' || (g % 8), t, t + interval '1 second', 1, gen_random_uuid(), '{}'::jsonb
     FROM generate_series(1, $2::integer) AS g, LATERAL (SELECT now() - make_interval(secs => $2 - g + 60) AS t) x`,
    [type, count],
  );
}

/** Inserts `count` queued sessions of `type`, oldest first, ready now (one statement). */
export async function seedQueuedSessions(db: Queryable, type: string, count: number): Promise<void> {
  if (count <= 0) return;
  await db.query(
    `INSERT INTO sessions (id, type, input, created_at, updated_at, run_at)
     SELECT gen_random_uuid(), $1, jsonb_build_object('i', g), t, t, t
     FROM generate_series(1, $2::integer) AS g,
          LATERAL (SELECT now() - make_interval(secs => ($2 - g) / 1000.0 + 1) AS t) x`,
    [type, count],
  );
}

/** Far enough ahead that no runner claims a held session before releaseHeldSessions. */
export const HELD_RUN_AT = '2999-01-01T00:00:00Z';

/**
 * Makes sessions enqueued with run_at = HELD_RUN_AT ready now and wakes the runners: the whole queue
 * becomes claimable at once, as when a worker starts on a full queue.
 */
export async function releaseHeldSessions(db: Queryable, type: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `WITH u AS (
       UPDATE sessions SET run_at = now() WHERE type = $1 AND status = 'queued' AND run_at >= $2::timestamptz
       RETURNING 1
     )
     SELECT c.n, pg_notify('sfw_sessions', '') FROM (SELECT count(*)::integer AS n FROM u) c`,
    [type, HELD_RUN_AT],
  );
  return rows[0]?.n ?? 0;
}

/**
 * Refreshes planner statistics and the visibility map after a bulk load, then writes the dirty pages out
 * so a checkpoint does not land in the middle of a measurement (CHECKPOINT needs a privileged role).
 */
export async function analyzeSessions(db: Queryable): Promise<void> {
  await db.query('VACUUM (ANALYZE) sessions');
  await db.query('CHECKPOINT').catch(() => {});
}

/** Sessions of `type` by status. */
export async function countSessions(db: Queryable): Promise<Record<string, number>> {
  const { rows } = await db.query<{ status: string; n: number }>(
    'SELECT status, count(*)::integer AS n FROM sessions GROUP BY status',
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** Sessions that reached a final status, from the statistics rollup (cheap to ask while a run is going). */
export async function finishedCount(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    'SELECT coalesce(sum(finished), 0)::integer AS n FROM session_minute_stats',
  );
  return rows[0]?.n ?? 0;
}

/**
 * Claim-to-finish window of finished sessions of `type` (created at or after `since`): the steady-state
 * processing time.
 */
export async function processingWindow(
  db: Queryable,
  type: string,
  since?: Date,
): Promise<{ n: number; firstClaimedAt: Date | null; lastFinishedAt: Date | null }> {
  const { rows } = await db.query<{ n: number; first: Date | null; last: Date | null }>(
    `SELECT count(*)::integer AS n, min(claimed_at) AS first, max(finished_at) AS last
     FROM sessions WHERE type = $1 AND finished_at IS NOT NULL AND created_at >= coalesce($2::timestamptz, '-infinity'::timestamptz)`,
    [type, since ?? null],
  );
  const r = rows[0];
  return { n: r?.n ?? 0, firstClaimedAt: r?.first ?? null, lastFinishedAt: r?.last ?? null };
}

/**
 * EXPLAIN ANALYZE of the two statements a claim runs (keep in step with sfw_exchange and sfw_claim): the
 * runner's running count and the pick of ready sessions. Read-only: the pick runs without its lock.
 */
export async function explainClaim(db: Db, runnerId: string, types: string[]): Promise<string[]> {
  const plan = async (sql: string, params: unknown[]) =>
    (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${sql}`, params)).rows
      .map((r) => r['QUERY PLAN'])
      .join('\n');
  return [
    await plan(`SELECT count(*) FROM session_running WHERE runner_id = $1`, [runnerId]),
    await plan(
      `SELECT r.id FROM unnest($1::text[]) AS t(type)
       CROSS JOIN LATERAL (
         SELECT q.id, q.priority, q.created_at FROM session_ready q WHERE q.type = t.type
         ORDER BY q.priority DESC, q.created_at, q.id LIMIT 10
       ) r
       ORDER BY r.priority DESC, r.created_at, r.id LIMIT 10`,
      [types],
    ),
  ];
}

/**
 * Postgres' own time (Execution + Planning Time of EXPLAIN ANALYZE) of one runner exchange that completes
 * `done` and claims up to `slots`, run for real; and the runner's running sessions after it, for the next.
 */
export async function explainExchange(
  db: Queryable,
  req: ClaimRequest,
  done: Pick<ClaimedSession, 'id' | 'leaseToken'>[],
): Promise<{ ms: number; next: ClaimedSession[] }> {
  const items = done.map((d) => ({ id: d.id, leaseToken: d.leaseToken, status: 'succeeded', result: {} }));
  const { rows } = await db.query<{ 'QUERY PLAN': unknown }>(
    `EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM sfw_exchange($1, $2, $3, $4, $4, $5, NULL, NULL, NULL)`,
    [req.runnerId, items.length ? JSON.stringify(items) : null, req.types, req.slots, req.leaseMs],
  );
  const raw = rows[0]!['QUERY PLAN'];
  const top = ((typeof raw === 'string' ? JSON.parse(raw) : raw) as Record<string, number>[])[0]!;
  const { rows: next } = await db.query<ClaimedSession>(
    `SELECT s.id, s.lease_token AS "leaseToken" FROM session_running r JOIN sessions s ON s.id = r.id
     WHERE r.runner_id = $1`,
    [req.runnerId],
  );
  return { ms: top['Execution Time']! + top['Planning Time']!, next };
}

/** The server's version and whether it can JIT-compile. */
export async function serverInfo(
  db: Queryable,
): Promise<{ version: string; jit: string; jitAvailable: boolean }> {
  const { rows } = await db.query<{ v: string; jit: string; avail: boolean }>(
    `SELECT current_setting('server_version') AS v, current_setting('jit') AS jit, pg_jit_available() AS avail`,
  );
  return { version: rows[0]!.v, jit: rows[0]!.jit, jitAvailable: rows[0]!.avail };
}
