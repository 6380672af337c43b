-- A runner's exchange with the queue: the sessions it finished and its next claim in one call (one
-- transaction, one commit, one round trip: POST /v1/runners/:id/claim with `complete`). Per batch instead of
-- per session: one statement per step, one runner_health write, one NOTIFY, one statistics update.
-- Also fewer writes per session on this path, same behaviour:
--  * idempotency keys are unique where set; sessions without one no longer add an index entry on every write;
--  * the reaper finds lapsed leases among the running sessions (sessions_running_idx: as many rows as
--    sessions running), so lease renewals no longer touch an index of their own and can be HOT updates;
--  * a completion locks its row with the UPDATE itself (re-checking the fence on the row it locks), not
--    with a separate SELECT … FOR UPDATE first;
--  * the exchange adds its claims and completions to the statistics in one statement; the trigger keeps
--    counting every other change (enqueue, cancel, the reaper, hand-backs, completions on their own).

ALTER TABLE sessions DROP CONSTRAINT sessions_idempotency_key_key;
CREATE UNIQUE INDEX sessions_idempotency_key_idx ON sessions (idempotency_key) WHERE idempotency_key IS NOT NULL;
DROP INDEX sessions_lease_idx;

-- Adds transitions to the statistics: one element per changed session (type, old and new status, seconds
-- waited from ready to claim, seconds run from claim to the end). Keys are written in sorted order so two
-- statements sharing a shard lock rows in the same order (no deadlocks).
CREATE FUNCTION sfw_stats_add(p_type text[], p_old text[], p_new text[], p_wait double precision[],
                              p_run double precision[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  WITH t AS (
    SELECT * FROM unnest(p_type, p_old, p_new, p_wait, p_run) AS u(type, old_status, new_status, wait_s, run_s)
    WHERE old_status IS DISTINCT FROM new_status
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
  INSERT INTO session_stats AS s (kind, type, status, bucket, shard, count, sum)
  SELECT ev.kind, ev.type, ev.status,
         CASE WHEN ev.kind = 'finished' THEN 0 ELSE width_bucket(ev.value, sfw_stats_bounds(ev.kind)) END,
         (pg_backend_pid() % 8)::smallint, count(*), coalesce(sum(ev.value), 0)
  FROM ev
  GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (kind, type, status, bucket, shard)
  DO UPDATE SET count = s.count + excluded.count, sum = s.sum + excluded.sum;
END
$$;

-- The trigger: the same counters from a statement's transition tables, unless the statement's caller adds
-- them itself (sfw_exchange sets sfw.stats_inline for its own transaction).
CREATE OR REPLACE FUNCTION sfw_stats_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_type text[];
  v_old text[];
  v_new text[];
  v_wait double precision[];
  v_run double precision[];
BEGIN
  SELECT array_agg(n.type), array_agg(o.status), array_agg(n.status),
         array_agg(extract(epoch FROM n.claimed_at - o.run_at)::double precision),
         array_agg(extract(epoch FROM n.finished_at - n.claimed_at)::double precision)
  INTO v_type, v_old, v_new, v_wait, v_run
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE o.status IS DISTINCT FROM n.status;
  IF v_type IS NOT NULL THEN
    PERFORM sfw_stats_add(v_type, v_old, v_new, v_wait, v_run);
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER sessions_stats_update ON sessions;
CREATE TRIGGER sessions_stats_update AFTER UPDATE ON sessions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  WHEN (current_setting('sfw.stats_inline', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION sfw_stats_after_update();

-- Does this outcome go back to the queue? (retryable status, attempts left, not cancelled)
CREATE FUNCTION sfw_retries(p_status text, p_retry_on text[], p_attempt integer, p_max_attempts integer,
                            p_cancel_requested boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT p_status = ANY (p_retry_on) AND p_attempt < p_max_attempts AND NOT p_cancel_requested
         AND p_status <> 'cancelled'
$$;

-- Completes a batch, each item fenced by its lease token. The UPDATE locks each row and re-checks the fence
-- (lease token, still running) on the row it locked, so a concurrent reaper or cancel is never overwritten;
-- whether to retry is decided from that row (with backoff while attempts remain). Rows are taken in id order
-- so concurrent batches lock alike. Per-runner totals are added here except for p_skip_runner, whose caller
-- folds them into its own runner_health write. Accepted ids go out on sfw_done, comma-separated, ≤ 200 per
-- message. Returns the accepted items with each session's type and run time, for a caller that keeps the
-- statistics itself.
CREATE FUNCTION sfw_complete_many(p_items jsonb, p_skip_runner text)
RETURNS TABLE (id uuid, status text, claimed_by text, failed boolean, type text, run_s double precision)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_ids uuid[];
  v_status text[];
  v_by text[];
  v_failed boolean[];
  v_type text[];
  v_run double precision[];
BEGIN
  WITH i AS (
    SELECT * FROM jsonb_to_recordset(p_items)
      AS x(id uuid, "leaseToken" uuid, status text, result jsonb, "errorMessage" text)
  ), t AS (
    SELECT s.id, i."leaseToken" AS token, s.claimed_by, s.claimed_at, s.attempt, i.status AS st,
           i.result AS res, i."errorMessage" AS err
    FROM i JOIN sessions s ON s.id = i.id AND s.lease_token = i."leaseToken" AND s.status = 'running'
    ORDER BY s.id
  ), u AS (
    UPDATE sessions x SET
      status = CASE WHEN sfw_retries(t.st, x.retry_on, x.attempt, x.max_attempts,
                                       x.cancel_requested) THEN 'queued' ELSE t.st END,
      result = CASE WHEN sfw_retries(t.st, x.retry_on, x.attempt, x.max_attempts,
                                       x.cancel_requested) THEN NULL ELSE t.res END,
      error_message = t.err,
      updated_at = now(),
      finished_at = CASE WHEN sfw_retries(t.st, x.retry_on, x.attempt, x.max_attempts,
                                       x.cancel_requested) THEN NULL ELSE now() END,
      run_at = CASE WHEN sfw_retries(t.st, x.retry_on, x.attempt, x.max_attempts,
                                       x.cancel_requested) THEN now() + sfw_retry_delay(t.attempt) ELSE x.run_at END,
      claimed_by = CASE WHEN sfw_retries(t.st, x.retry_on, x.attempt, x.max_attempts,
                                       x.cancel_requested) THEN NULL ELSE x.claimed_by END,
      lease_expires_at = NULL,
      attempts = x.attempts || jsonb_build_object(
        'attempt', t.attempt, 'runnerId', t.claimed_by, 'status', t.st, 'errorMessage', t.err,
        'startedAt', t.claimed_at, 'finishedAt', now())
    FROM t
    WHERE x.id = t.id AND x.lease_token = t.token AND x.status = 'running'
    RETURNING x.id, x.status, t.claimed_by, (t.st IN ('failed', 'error')) AS failed, x.type,
              extract(epoch FROM x.finished_at - t.claimed_at)::double precision AS run_s
  ), h AS (
    UPDATE runner_health r SET
      total_sessions_executed = r.total_sessions_executed + c.n,
      total_failures = r.total_failures + c.f
    FROM (SELECT u.claimed_by, count(*) AS n, count(*) FILTER (WHERE u.failed) AS f FROM u
          WHERE u.claimed_by IS DISTINCT FROM p_skip_runner GROUP BY u.claimed_by) c
    WHERE r.runner_id = c.claimed_by
  )
  SELECT array_agg(u.id), array_agg(u.status), array_agg(u.claimed_by), array_agg(u.failed),
         array_agg(u.type), array_agg(u.run_s)
  INTO v_ids, v_status, v_by, v_failed, v_type, v_run
  FROM u;

  IF v_ids IS NULL THEN RETURN; END IF;
  FOR k IN 0 .. (array_length(v_ids, 1) - 1) / 200 LOOP
    PERFORM pg_notify('sfw_done', array_to_string(v_ids[k * 200 + 1 : (k + 1) * 200], ','));
  END LOOP;
  RETURN QUERY SELECT * FROM unnest(v_ids, v_status, v_by, v_failed, v_type, v_run);
END
$$;

-- The exchange: the runner's finished sessions (p_done, may be NULL or empty; their slots are free before
-- the claim counts), then a claim of up to p_slots more: the runner's lock, its runner_health row (a claim
-- is also a poll; its totals go into the same write), the pick of ready sessions, priority then FIFO.
-- Answers one row: the accepted completions (ids and statuses) and the claimed sessions as the JSON the
-- runner receives, built here in claim order so the API sends it through instead of parsing rows and
-- serializing them again (timestamps written as the rest of the API writes them: UTC, milliseconds, `Z`).
-- The ready pick must walk sessions_ready_idx in claim order whatever the planner statistics say: on a
-- table never analyzed, or with statistics taken while many sessions were scheduled for later and then
-- became due together, the planner estimated ~1 ready row and chose to read every queued row and sort them
-- (3 ms per claim at 5,000 queued, 14 ms at 20,000, instead of ~0.1 ms). With bitmap scans and sorting off
-- for the call, the ordered index scan is the only plan left that is not penalised; statements that must
-- sort still do. sfw.stats_inline keeps the statistics trigger out of the call's way.
CREATE FUNCTION sfw_exchange(p_runner text, p_done jsonb, p_types text[], p_slots integer, p_max integer,
                             p_lease_ms integer, p_hostname text, p_version text, p_started_at timestamptz)
RETURNS TABLE (done_ids uuid[], done_status text[], claimed json)
LANGUAGE plpgsql SET enable_bitmapscan = off SET enable_sort = off SET sfw.stats_inline = on AS $$
#variable_conflict use_column
DECLARE
  v_max integer;
  v_free integer;
  v_ids uuid[];
  v_status text[];
  v_n integer := 0;
  v_failed integer := 0;
  v_dtype text[] := '{}';
  v_drun double precision[] := '{}';
  v_rows sessions[];
  v_ctype text[] := '{}';
  v_cwait double precision[] := '{}';
  v_nd integer;
  v_nc integer;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('sfw.claim:' || p_runner, 0));

  IF p_done IS NOT NULL AND jsonb_array_length(p_done) > 0 THEN
    SELECT array_agg(c.id), array_agg(c.status),
           count(*) FILTER (WHERE c.claimed_by = p_runner),
           count(*) FILTER (WHERE c.claimed_by = p_runner AND c.failed),
           coalesce(array_agg(c.type), '{}'), coalesce(array_agg(c.run_s), '{}')
    INTO v_ids, v_status, v_n, v_failed, v_dtype, v_drun
    FROM sfw_complete_many(p_done, p_runner) c;
  END IF;

  INSERT INTO runner_health AS r (runner_id, max_concurrency, hostname, version, started_at, last_heartbeat,
                                  total_sessions_executed, total_failures)
  VALUES (p_runner, coalesce(p_max, (SELECT max_concurrency FROM scheduler_config)), p_hostname, p_version,
          coalesce(p_started_at, now()), now(), v_n, v_failed)
  ON CONFLICT (runner_id) DO UPDATE SET
    last_heartbeat = now(),
    max_concurrency = coalesce(p_max, r.max_concurrency),
    status = CASE WHEN r.status = 'stopped' THEN 'running' ELSE r.status END,
    hostname = coalesce(p_hostname, r.hostname),
    version = coalesce(p_version, r.version),
    started_at = coalesce(p_started_at, r.started_at),
    uptime_seconds = greatest(0, extract(epoch FROM now() - coalesce(p_started_at, r.started_at)))::bigint,
    total_sessions_executed = r.total_sessions_executed + v_n,
    total_failures = r.total_failures + v_failed
  RETURNING r.max_concurrency INTO v_max;

  IF p_slots > 0 THEN
    SELECT least(p_slots, v_max - count(*))::integer INTO v_free
      FROM sessions s WHERE s.status = 'running' AND s.claimed_by = p_runner;
    IF v_free > 0 THEN
      WITH picked AS (
        SELECT q.id FROM sessions q
        WHERE q.status = 'queued' AND q.run_at <= now() AND q.type = ANY (p_types)
        ORDER BY q.priority DESC, q.created_at, q.id
        LIMIT v_free
        FOR UPDATE SKIP LOCKED
      ), c AS (
        UPDATE sessions s SET
          status = 'running',
          claimed_by = p_runner,
          claimed_at = now(),
          updated_at = now(),
          attempt = s.attempt + 1,
          lease_token = gen_random_uuid(),
          lease_expires_at = now() + make_interval(secs => p_lease_ms / 1000.0)
        FROM picked
        WHERE s.id = picked.id
        RETURNING s AS row
      )
      SELECT array_agg(c.row), coalesce(array_agg((c.row).type), '{}'),
             coalesce(array_agg(extract(epoch FROM (c.row).claimed_at - (c.row).run_at)::double precision), '{}')
      INTO v_rows, v_ctype, v_cwait
      FROM c;
    END IF;
  END IF;

  v_nd := coalesce(array_length(v_ids, 1), 0);
  v_nc := coalesce(array_length(v_rows, 1), 0);
  IF v_nd + v_nc > 0 THEN
    PERFORM sfw_stats_add(
      v_dtype || v_ctype,
      array_fill('running'::text, ARRAY[v_nd]) || array_fill('queued'::text, ARRAY[v_nc]),
      coalesce(v_status, '{}') || array_fill('running'::text, ARRAY[v_nc]),
      array_fill(NULL::double precision, ARRAY[v_nd]) || v_cwait,
      v_drun || array_fill(NULL::double precision, ARRAY[v_nc]));
  END IF;

  done_ids := v_ids;
  done_status := v_status;
  -- The claimed sessions as the runner receives them (ClaimedSession), in claim order.
  IF v_nc > 0 THEN
    SELECT json_agg(json_build_object(
             'id', r.id, 'type', r.type, 'input', r.input, 'priority', r.priority, 'attempt', r.attempt,
             'maxAttempts', r.max_attempts, 'timeoutMs', r.timeout_ms, 'leaseToken', r.lease_token,
             'leaseExpiresAt', to_char(r.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
             'createdAt', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
             'artifactOptions', r.artifact_options)
           ORDER BY r.priority DESC, r.created_at, r.id)
    INTO claimed
    FROM unnest(v_rows) AS r;
  ELSE
    claimed := '[]'::json;
  END IF;
  RETURN NEXT;
END
$$;

-- Replaced by sfw_exchange and sfw_complete_many: one definition of claiming and of completing.
DROP FUNCTION sfw_claim(text, text[], integer, integer, integer, text, text, timestamptz);
DROP FUNCTION sfw_complete(uuid, uuid, text, jsonb, text);
