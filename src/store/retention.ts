import { withTransaction, type Db, type Queryable } from './db.js';

/**
 * Retention's SQL: deleting finished sessions past their status's retention, a batch at a time, and the
 * fleet-wide totals of what was removed. One replica at a time prunes: each batch's transaction first takes
 * a transaction-scoped advisory lock (it holds through PgBouncer in transaction mode, unlike a session
 * lock), and the rows themselves are taken with FOR UPDATE SKIP LOCKED, so even two pruners never delete,
 * count or wait on the same session.
 */

export const FINAL_STATUSES = ['succeeded', 'failed', 'error', 'cancelled'] as const;
export type FinalStatus = (typeof FINAL_STATUSES)[number];

const RETENTION_LOCK_KEY = 727_009;

export interface PrunedSession {
  id: string;
  /** Bytes of the artifacts recorded on it. */
  bytes: number;
  /** It recorded artifacts (their files are to be removed once the batch committed). */
  hasArtifacts: boolean;
}

/** The pruning statement ($1 status, $2 retention in ms, $3 batch size); exported for the plan test. */
export const PRUNE_SQL = `WITH v AS (
   -- The status and the cutoff as one range of sessions_retention_idx, in its order: (status, finished_at)
   -- from ($1, -infinity) up to ($1, cutoff). No other index has that order or that range (status = $1
   -- would let sessions_finished_idx serve the order and read every other status's rows on the way).
   SELECT s.id FROM sessions s
   WHERE (s.status, s.finished_at) >= ($1::text, '-infinity'::timestamptz)
     AND (s.status, s.finished_at) < ($1::text, now() - $2 * interval '1 millisecond')
     AND s.status IN ('succeeded', 'failed', 'error', 'cancelled') AND s.finished_at IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries w WHERE w.session_id = s.id AND w.status = 'pending')
   ORDER BY s.status, s.finished_at
   LIMIT $3
   FOR UPDATE OF s SKIP LOCKED
 ), d AS (
   DELETE FROM sessions s
   WHERE s.id = ANY ((SELECT array_agg(id) FROM v)::uuid[]) -- locked above: still final
   RETURNING s.id,
     (SELECT coalesce(sum((a->>'size')::bigint), 0) FROM jsonb_array_elements(s.artifacts) a)::bigint AS bytes,
     jsonb_array_length(s.artifacts) > 0 AS has_artifacts
 ), w AS (
   DELETE FROM webhook_deliveries x WHERE x.session_id = ANY ((SELECT array_agg(id) FROM d)::uuid[])
 ), st AS (
   INSERT INTO retention_stats AS r (status, pruned, artifact_bytes)
   SELECT $1, count(*), coalesce(sum(bytes), 0) FROM d HAVING count(*) > 0
   ON CONFLICT (status) DO UPDATE SET pruned = r.pruned + excluded.pruned,
                                      artifact_bytes = r.artifact_bytes + excluded.artifact_bytes
 )
 SELECT id, bytes, has_artifacts FROM d ORDER BY id`;

/**
 * Deletes up to `limit` sessions of one final status that finished more than `olderThanMs` ago, oldest
 * first, with their webhook deliveries, and adds them to retention_stats, in one short transaction.
 * Sessions with a delivery still pending are left for a later pass (a delivery is never lost to pruning).
 * Answers the deleted sessions, or null when another replica holds the pruning lock.
 */
export async function pruneFinishedSessions(
  db: Db,
  status: FinalStatus,
  olderThanMs: number,
  limit: number,
): Promise<PrunedSession[] | null> {
  return withTransaction(db, async (client) => {
    const { rows: lock } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS ok', [
      RETENTION_LOCK_KEY,
    ]);
    if (!lock[0]?.ok) return null;
    const { rows } = await client.query<{ id: string; bytes: number; has_artifacts: boolean }>(PRUNE_SQL, [
      status,
      olderThanMs,
      limit,
    ]);
    return rows.map((r) => ({ id: r.id, bytes: r.bytes, hasArtifacts: r.has_artifacts }));
  });
}

/** Records the end of a pass (the `sfw_retention_last_run_timestamp_seconds` gauge). */
export async function recordRetentionRun(db: Queryable): Promise<void> {
  await db.query('UPDATE retention_runs SET last_run_at = now() WHERE id');
}

/** Which of these ids have a session row (for the orphan sweep of artifact folders). */
export async function existingSessionIds(db: Queryable, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>('SELECT id FROM sessions WHERE id = ANY ($1::uuid[])', [
    ids,
  ]);
  return new Set(rows.map((r) => r.id));
}

/** Adds swept orphan folders and their bytes to the totals. */
export async function recordOrphansSwept(db: Queryable, folders: number, bytes: number): Promise<void> {
  if (folders === 0) return;
  await db.query(
    `UPDATE retention_runs SET orphan_folders = orphan_folders + $1, orphan_bytes = orphan_bytes + $2 WHERE id`,
    [folders, bytes],
  );
}

export interface RetentionTotals {
  pruned: Record<FinalStatus, number>;
  /** Artifact bytes of pruned sessions plus swept orphan folders. */
  artifactBytes: number;
  orphanFolders: number;
  lastRunAt: Date | null;
}

export async function retentionTotals(db: Queryable): Promise<RetentionTotals> {
  const [{ rows: stats }, { rows: runs }] = await Promise.all([
    db.query<{ status: FinalStatus; pruned: number; artifact_bytes: number }>(
      'SELECT status, pruned, artifact_bytes FROM retention_stats',
    ),
    db.query<{ last_run_at: Date | null; orphan_folders: number; orphan_bytes: number }>(
      'SELECT last_run_at, orphan_folders, orphan_bytes FROM retention_runs WHERE id',
    ),
  ]);
  const pruned: Record<FinalStatus, number> = { succeeded: 0, failed: 0, error: 0, cancelled: 0 };
  let artifactBytes = runs[0]?.orphan_bytes ?? 0;
  for (const r of stats) {
    pruned[r.status] = r.pruned;
    artifactBytes += r.artifact_bytes;
  }
  return {
    pruned,
    artifactBytes,
    orphanFolders: runs[0]?.orphan_folders ?? 0,
    lastRunAt: runs[0]?.last_run_at ?? null,
  };
}
