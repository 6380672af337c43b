-- Retention: finished sessions are deleted RETENTION_MS (per final status: RETENTION_<STATUS>_MS) after
-- they finished, in bounded batches, by one API replica at a time (src/store/retention.ts). Statistics are
-- untouched: session_stats, session_minute_stats and schedule_stats are cumulative rollups written on
-- INSERT and UPDATE only, and no trigger on DELETE changes them, so totals and rates keep the pruned ones.

-- The pruning statement's only index: one final status, oldest finished first (WHERE status = $1 AND
-- finished_at < cutoff ORDER BY finished_at LIMIT n reads exactly the rows it deletes).
CREATE INDEX sessions_retention_idx ON sessions (status, finished_at)
  WHERE status IN ('succeeded', 'failed', 'error', 'cancelled') AND finished_at IS NOT NULL;

-- What retention removed, fleet-wide (every replica's /metrics answers the same): per final status, the
-- sessions deleted and the bytes of the artifacts recorded on them.
CREATE TABLE retention_stats (
  status         text PRIMARY KEY CHECK (status IN ('succeeded', 'failed', 'error', 'cancelled')),
  pruned         bigint NOT NULL DEFAULT 0,
  artifact_bytes bigint NOT NULL DEFAULT 0
);

-- The last completed pass (any replica), and artifact folders swept because no session row had them
-- (a crash between a batch's commit and the removal of its files, or files on another replica's disk).
CREATE TABLE retention_runs (
  id             boolean PRIMARY KEY DEFAULT true CHECK (id),
  last_run_at    timestamptz,
  orphan_folders bigint NOT NULL DEFAULT 0,
  orphan_bytes   bigint NOT NULL DEFAULT 0
);
INSERT INTO retention_runs (id) VALUES (true);
