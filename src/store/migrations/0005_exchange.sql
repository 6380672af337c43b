-- Completions set-based, and a runner's completions plus its next claim in one call (one transaction, one
-- commit, one round trip): a busy runner reports what it finished and asks for more in the same request.
-- Per batch instead of per session: one statement per step, one statistics-trigger run per step, one
-- runner_health write and one NOTIFY.

-- Completes a batch, each item fenced by its lease token, rows locked in id order (concurrent batches lock
-- alike). Returns the accepted items. A retryable outcome with attempts left queues the session again with
-- backoff. Per-runner totals are added here except for p_skip_runner, whose caller folds them into its own
-- runner_health write. The ids of accepted items go out on sfw_done, comma-separated, ≤ 200 per message.
CREATE FUNCTION sfw_complete_many(p_items jsonb, p_skip_runner text)
RETURNS TABLE (id uuid, status text, claimed_by text, failed boolean) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_ids uuid[];
  v_status text[];
  v_by text[];
  v_failed boolean[];
BEGIN
  WITH i AS (
    SELECT * FROM jsonb_to_recordset(p_items)
      AS x(id uuid, "leaseToken" uuid, status text, result jsonb, "errorMessage" text)
  ), t AS (
    SELECT s.id, s.claimed_by, s.claimed_at, s.attempt, i.status AS st, i.result AS res, i."errorMessage" AS err,
           (i.status = ANY (s.retry_on) AND s.attempt < s.max_attempts AND NOT s.cancel_requested
            AND i.status <> 'cancelled') AS retry
    FROM i JOIN sessions s ON s.id = i.id AND s.lease_token = i."leaseToken" AND s.status = 'running'
    ORDER BY s.id
    FOR UPDATE OF s
  ), u AS (
    UPDATE sessions x SET
      status = CASE WHEN t.retry THEN 'queued' ELSE t.st END,
      result = CASE WHEN t.retry THEN NULL ELSE t.res END,
      error_message = t.err,
      updated_at = now(),
      finished_at = CASE WHEN t.retry THEN NULL ELSE now() END,
      run_at = CASE WHEN t.retry THEN now() + sfw_retry_delay(t.attempt) ELSE x.run_at END,
      claimed_by = CASE WHEN t.retry THEN NULL ELSE x.claimed_by END,
      lease_expires_at = NULL,
      attempts = x.attempts || jsonb_build_object(
        'attempt', t.attempt, 'runnerId', t.claimed_by, 'status', t.st, 'errorMessage', t.err,
        'startedAt', t.claimed_at, 'finishedAt', now())
    FROM t WHERE x.id = t.id
    RETURNING x.id, x.status, t.claimed_by, (t.st IN ('failed', 'error')) AS failed
  ), h AS (
    UPDATE runner_health r SET
      total_sessions_executed = r.total_sessions_executed + c.n,
      total_failures = r.total_failures + c.f
    FROM (SELECT u.claimed_by, count(*) AS n, count(*) FILTER (WHERE u.failed) AS f FROM u
          WHERE u.claimed_by IS DISTINCT FROM p_skip_runner GROUP BY u.claimed_by) c
    WHERE r.runner_id = c.claimed_by
  )
  SELECT array_agg(u.id), array_agg(u.status), array_agg(u.claimed_by), array_agg(u.failed)
  INTO v_ids, v_status, v_by, v_failed
  FROM u;

  IF v_ids IS NULL THEN RETURN; END IF;
  FOR k IN 0 .. (array_length(v_ids, 1) - 1) / 200 LOOP
    PERFORM pg_notify('sfw_done', array_to_string(v_ids[k * 200 + 1 : (k + 1) * 200], ','));
  END LOOP;
  RETURN QUERY SELECT * FROM unnest(v_ids, v_status, v_by, v_failed);
END
$$;

-- A runner's exchange: its finished sessions (p_done, may be NULL or empty), then a claim of up to p_slots
-- more, exactly as sfw_claim (same lock, same runner_health upsert, same pick), with the slots the
-- completions freed already free. The runner's own totals go into the same runner_health write.
-- Rows: kind 'done' (id, status) for accepted completions, kind 'claimed' for claimed sessions, with only
-- the columns a runner needs.
CREATE FUNCTION sfw_exchange(p_runner text, p_done jsonb, p_types text[], p_slots integer, p_max integer,
                             p_lease_ms integer, p_hostname text, p_version text, p_started_at timestamptz)
RETURNS TABLE (kind text, id uuid, status text, type text, input jsonb, priority integer, attempt integer,
               max_attempts integer, timeout_ms integer, lease_token uuid, lease_expires_at timestamptz,
               created_at timestamptz, artifact_options jsonb)
LANGUAGE plpgsql SET enable_bitmapscan = off AS $$
#variable_conflict use_column
DECLARE
  v_max integer;
  v_free integer;
  v_ids uuid[];
  v_status text[];
  v_n integer := 0;
  v_failed integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('sfw.claim:' || p_runner, 0));

  IF p_done IS NOT NULL AND jsonb_array_length(p_done) > 0 THEN
    SELECT array_agg(c.id), array_agg(c.status),
           count(*) FILTER (WHERE c.claimed_by = p_runner),
           count(*) FILTER (WHERE c.claimed_by = p_runner AND c.failed)
    INTO v_ids, v_status, v_n, v_failed
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

  IF v_ids IS NOT NULL THEN
    RETURN QUERY
    SELECT 'done'::text, d.id, d.status, NULL::text, NULL::jsonb, NULL::integer, NULL::integer, NULL::integer,
           NULL::integer, NULL::uuid, NULL::timestamptz, NULL::timestamptz, NULL::jsonb
    FROM unnest(v_ids, v_status) AS d(id, status);
  END IF;

  IF p_slots <= 0 THEN RETURN; END IF;
  SELECT least(p_slots, v_max - count(*))::integer INTO v_free
    FROM sessions s WHERE s.status = 'running' AND s.claimed_by = p_runner;
  IF v_free <= 0 THEN RETURN; END IF;

  RETURN QUERY
  WITH picked AS (
    SELECT q.id FROM sessions q
    WHERE q.status = 'queued' AND q.run_at <= now() AND q.type = ANY (p_types)
    ORDER BY q.priority DESC, q.created_at, q.id
    LIMIT v_free
    FOR UPDATE SKIP LOCKED
  )
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
  RETURNING 'claimed'::text, s.id, s.status, s.type, s.input, s.priority, s.attempt, s.max_attempts, s.timeout_ms,
            s.lease_token, s.lease_expires_at, s.created_at, s.artifact_options;
END
$$;

-- Replaced by sfw_exchange and sfw_complete_many: one definition of claiming and of completing.
DROP FUNCTION sfw_claim(text, text[], integer, integer, integer, text, text, timestamptz);
DROP FUNCTION sfw_complete(uuid, uuid, text, jsonb, text);
