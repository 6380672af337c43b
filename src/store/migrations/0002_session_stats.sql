-- Fleet-wide session statistics, kept by triggers so every API replica reads the same numbers and reading
-- them never walks the history. Counters are cumulative (Prometheus counters and histograms) and sharded
-- by backend so concurrent claims and completions rarely wait on the same counter row.

-- Cumulative histograms and counts per session type and status.
--   kind 'claim_wait': seconds from ready (run_at: the enqueue time unless scheduled or retried) to claim;
--                      status is 'running'.
--   kind 'duration':   seconds from claim to the final status, for sessions that ended while running.
--   kind 'finished':   every session that reached a final status (bucket 0, sum 0).
-- bucket is width_bucket(value, sfw_stats_bounds(kind)): 0 .. n, where n is the +Inf bucket.
CREATE TABLE session_stats (
  kind    text NOT NULL,
  type    text NOT NULL,
  status  text NOT NULL,
  bucket  smallint NOT NULL,
  shard   smallint NOT NULL,
  count   bigint NOT NULL DEFAULT 0,
  sum     double precision NOT NULL DEFAULT 0,
  PRIMARY KEY (kind, type, status, bucket, shard)
);

-- Per-minute flow of the queue (for charts of depth, wait and throughput over time).
CREATE TABLE session_minute_stats (
  minute         timestamptz NOT NULL,
  shard          smallint NOT NULL,
  entered_queue  bigint NOT NULL DEFAULT 0,
  left_queue     bigint NOT NULL DEFAULT 0,
  claimed        bigint NOT NULL DEFAULT 0,
  claim_wait_sum double precision NOT NULL DEFAULT 0,
  finished       bigint NOT NULL DEFAULT 0,
  failed         bigint NOT NULL DEFAULT 0,
  duration_sum   double precision NOT NULL DEFAULT 0,
  PRIMARY KEY (minute, shard)
);

-- Recently finished sessions (the recent failure-rate window) without walking the whole history.
CREATE INDEX sessions_finished_idx ON sessions (finished_at) WHERE finished_at IS NOT NULL;

CREATE FUNCTION sfw_stats_bounds(p_kind text) RETURNS double precision[] LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE p_kind
    WHEN 'claim_wait' THEN ARRAY[0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600]::double precision[]
    WHEN 'duration' THEN ARRAY[0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]::double precision[]
    ELSE ARRAY[]::double precision[]
  END
$$;

-- Adds one statement's transitions to the counters. Keys are written in sorted order so two statements
-- sharing a shard lock rows in the same order (no deadlocks).
CREATE FUNCTION sfw_stats_record(p_events jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO session_stats AS s (kind, type, status, bucket, shard, count, sum)
  SELECT e.kind, e.type, e.status,
         CASE WHEN e.kind = 'finished' THEN 0 ELSE width_bucket(e.value, sfw_stats_bounds(e.kind)) END,
         (pg_backend_pid() % 8)::smallint, count(*), coalesce(sum(e.value), 0)
  FROM jsonb_to_recordset(p_events) AS e(kind text, type text, status text, value double precision)
  GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (kind, type, status, bucket, shard)
  DO UPDATE SET count = s.count + excluded.count, sum = s.sum + excluded.sum
$$;

CREATE FUNCTION sfw_stats_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO session_minute_stats AS m (minute, shard, entered_queue)
  SELECT date_trunc('minute', now()), (pg_backend_pid() % 8)::smallint, count(*)
  FROM new_rows WHERE status = 'queued'
  HAVING count(*) > 0
  ON CONFLICT (minute, shard) DO UPDATE SET entered_queue = m.entered_queue + excluded.entered_queue;
  RETURN NULL;
END
$$;

CREATE FUNCTION sfw_stats_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_events jsonb;
BEGIN
  WITH t AS (
    SELECT n.type, o.status AS old_status, n.status AS new_status,
           extract(epoch FROM n.claimed_at - o.run_at) AS wait_s,
           extract(epoch FROM n.finished_at - n.claimed_at) AS run_s
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE o.status IS DISTINCT FROM n.status
  ), ev AS (
    SELECT 'claim_wait' AS kind, type, 'running' AS status, greatest(wait_s, 0) AS value FROM t
    WHERE old_status = 'queued' AND new_status = 'running'
    UNION ALL
    SELECT 'duration', type, new_status, greatest(run_s, 0) FROM t
    WHERE old_status = 'running' AND new_status IN ('succeeded', 'failed', 'error', 'cancelled') AND run_s IS NOT NULL
    UNION ALL
    SELECT 'finished', type, new_status, 0 FROM t
    WHERE new_status IN ('succeeded', 'failed', 'error', 'cancelled')
      AND old_status NOT IN ('succeeded', 'failed', 'error', 'cancelled')
  ), minute AS (
    INSERT INTO session_minute_stats AS m (minute, shard, entered_queue, left_queue, claimed, claim_wait_sum,
                                           finished, failed, duration_sum)
    SELECT date_trunc('minute', now()), (pg_backend_pid() % 8)::smallint,
           count(*) FILTER (WHERE new_status = 'queued'),
           count(*) FILTER (WHERE old_status = 'queued'),
           count(*) FILTER (WHERE old_status = 'queued' AND new_status = 'running'),
           coalesce(sum(greatest(wait_s, 0)) FILTER (WHERE old_status = 'queued' AND new_status = 'running'), 0),
           count(*) FILTER (WHERE new_status IN ('succeeded', 'failed', 'error', 'cancelled')),
           count(*) FILTER (WHERE new_status IN ('failed', 'error')),
           coalesce(sum(greatest(run_s, 0)) FILTER (WHERE old_status = 'running' AND new_status IN ('succeeded', 'failed', 'error', 'cancelled')), 0)
    FROM t
    HAVING count(*) > 0
    ON CONFLICT (minute, shard) DO UPDATE SET
      entered_queue = m.entered_queue + excluded.entered_queue,
      left_queue = m.left_queue + excluded.left_queue,
      claimed = m.claimed + excluded.claimed,
      claim_wait_sum = m.claim_wait_sum + excluded.claim_wait_sum,
      finished = m.finished + excluded.finished,
      failed = m.failed + excluded.failed,
      duration_sum = m.duration_sum + excluded.duration_sum
  )
  SELECT jsonb_agg(ev) INTO v_events FROM ev;
  IF v_events IS NOT NULL THEN
    PERFORM sfw_stats_record(v_events);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER sessions_stats_insert AFTER INSERT ON sessions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sfw_stats_after_insert();
CREATE TRIGGER sessions_stats_update AFTER UPDATE ON sessions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sfw_stats_after_update();

-- Sessions claimed or finished before this migration count too (one aggregate pass over the history).
INSERT INTO session_stats (kind, type, status, bucket, shard, count, sum)
SELECT kind, type, status,
       CASE WHEN kind = 'finished' THEN 0 ELSE width_bucket(value, sfw_stats_bounds(kind)) END, 0, count(*),
       coalesce(sum(value), 0)
FROM (
  SELECT 'claim_wait' AS kind, type, 'running' AS status, greatest(extract(epoch FROM claimed_at - run_at), 0) AS value
  FROM sessions WHERE claimed_at IS NOT NULL
  UNION ALL
  SELECT 'duration', type, status, greatest(extract(epoch FROM finished_at - claimed_at), 0)
  FROM sessions WHERE status IN ('succeeded', 'failed', 'error', 'cancelled') AND claimed_at IS NOT NULL
    AND finished_at IS NOT NULL
  UNION ALL
  SELECT 'finished', type, status, 0 FROM sessions WHERE status IN ('succeeded', 'failed', 'error', 'cancelled')
) e
GROUP BY 1, 2, 3, 4;
