-- Retry delay after a finished attempt: exponential from 1 s, capped at 5 min, with jitter. One definition
-- for completions and the reaper.
CREATE FUNCTION sfw_retry_delay(p_attempt integer) RETURNS interval LANGUAGE sql VOLATILE AS $$
  SELECT make_interval(secs => least(300, power(2, least(p_attempt - 1, 16))) * (0.5 + random() / 2))
$$;

-- Completion as a function: the same fenced statement as before, with its plan cached per connection
-- instead of planned on every call (completion is on the hot path of every session).
CREATE FUNCTION sfw_complete(p_id uuid, p_token uuid, p_status text, p_result jsonb, p_error text)
RETURNS SETOF sessions LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY
  WITH t AS (
    SELECT id, claimed_by, claimed_at, attempt,
           (p_status = ANY (retry_on) AND attempt < max_attempts AND NOT cancel_requested AND p_status <> 'cancelled') AS retry
    FROM sessions WHERE id = p_id AND lease_token = p_token AND status = 'running'
    FOR UPDATE
  ), s AS (
    UPDATE sessions x SET
      status = CASE WHEN t.retry THEN 'queued' ELSE p_status END,
      result = CASE WHEN t.retry THEN NULL ELSE p_result END,
      error_message = p_error,
      updated_at = now(),
      finished_at = CASE WHEN t.retry THEN NULL ELSE now() END,
      run_at = CASE WHEN t.retry THEN now() + sfw_retry_delay(t.attempt) ELSE x.run_at END,
      claimed_by = CASE WHEN t.retry THEN NULL ELSE x.claimed_by END,
      lease_expires_at = NULL,
      attempts = x.attempts || jsonb_build_object(
        'attempt', t.attempt, 'runnerId', t.claimed_by, 'status', p_status, 'errorMessage', p_error,
        'startedAt', t.claimed_at, 'finishedAt', now())
    FROM t WHERE x.id = t.id
    RETURNING x.*
  ), h AS (
    UPDATE runner_health SET
      total_sessions_executed = total_sessions_executed + 1,
      total_failures = total_failures + CASE WHEN p_status IN ('failed', 'error') THEN 1 ELSE 0 END
    WHERE runner_id = (SELECT claimed_by FROM t)
  )
  SELECT s.* FROM s CROSS JOIN LATERAL (SELECT pg_notify('sfw_done', s.id::text)) AS wake;
END
$$;
