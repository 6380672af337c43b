-- An idempotency key answers the session it made only for the same request, and runners say which session
-- types they serve.

-- The hash of the request that made a session with an idempotency key (its type, input, priority, runAt,
-- timeoutMs, maxAttempts, retryOn and artifacts, with the defaults applied): a repeat of the key with
-- another request is refused instead of answered with this session. NULL for sessions without a key, and
-- for the ones enqueued before this column (their repeats are answered as before).
ALTER TABLE sessions ADD COLUMN request_hash text;

-- The session types a runner serves, as its heartbeats name them ('{}': not told, e.g. an older runner).
ALTER TABLE runner_health ADD COLUMN types text[] NOT NULL DEFAULT '{}';

-- Heartbeats (see 0002), recording the types each runner serves.
CREATE OR REPLACE FUNCTION sfw_heartbeats(p_beats jsonb, p_lease_ms integer)
RETURNS TABLE (runner_id text, cancel uuid[], lost uuid[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  -- Leases first, then the runners' rows: the order every completion and claim takes its locks in
  -- (sessions, then runner_health), so a heartbeat batch and an exchange never wait on each other in a circle.
  PERFORM sfw_lock_sessions(ARRAY(
    SELECT (l ->> 'id')::uuid
    FROM jsonb_to_recordset(p_beats) AS x(runner text, sessions jsonb), jsonb_array_elements(x.sessions) l));
  RETURN QUERY
  WITH refs AS (
    SELECT x.runner, (l ->> 'id')::uuid AS id, (l ->> 'leaseToken')::uuid AS token
    FROM jsonb_to_recordset(p_beats) AS x(runner text, sessions jsonb), jsonb_array_elements(x.sessions) l
    ORDER BY 2
  ), renewed AS (
    UPDATE sessions s SET lease_expires_at = now() + make_interval(secs => p_lease_ms / 1000.0), updated_at = now(),
                          confirmed_at = coalesce(s.confirmed_at, now())
    FROM refs
    WHERE s.id = refs.id AND s.lease_token = refs.token AND s.status = 'running' AND s.claimed_by = refs.runner
    RETURNING s.id, s.claimed_by, s.cancel_requested
  )
  SELECT x.runner,
         coalesce((SELECT array_agg(n.id) FROM renewed n WHERE n.claimed_by = x.runner AND n.cancel_requested), '{}'),
         coalesce((SELECT array_agg(f.id) FROM refs f WHERE f.runner = x.runner
                   AND NOT EXISTS (SELECT 1 FROM renewed n WHERE n.id = f.id)), '{}')
  FROM jsonb_to_recordset(p_beats) AS x(runner text);
  WITH b AS (
    SELECT * FROM jsonb_to_recordset(p_beats) AS x(runner text, status text, active integer, max integer,
                                                   hostname text, version text, "startedAt" timestamptz,
                                                   rss bigint, browser bigint, effective integer, types text[])
    ORDER BY x.runner
  ), u AS (
    UPDATE runner_health r SET
      status = coalesce(b.status, CASE WHEN r.status = 'stopped' THEN 'running' ELSE r.status END),
      last_heartbeat = now(),
      active_sessions = b.active,
      max_concurrency = b.max,
      hostname = coalesce(b.hostname, r.hostname),
      version = coalesce(b.version, r.version),
      started_at = coalesce(b."startedAt", r.started_at),
      memory_rss_bytes = coalesce(b.rss, r.memory_rss_bytes),
      browser_memory_bytes = coalesce(b.browser, r.browser_memory_bytes),
      effective_concurrency = coalesce(b.effective, r.effective_concurrency),
      types = coalesce(b.types, r.types)
    FROM b WHERE r.runner_id = b.runner
    RETURNING r.runner_id
  )
  INSERT INTO runner_health (runner_id, status, active_sessions, max_concurrency, hostname, version, started_at,
                             memory_rss_bytes, browser_memory_bytes, effective_concurrency, types, last_heartbeat)
  SELECT b.runner, coalesce(b.status, 'running'), b.active, b.max, b.hostname, b.version,
         coalesce(b."startedAt", now()), b.rss, b.browser, b.effective, coalesce(b.types, '{}'), now()
  FROM b WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.runner_id = b.runner)
  ON CONFLICT (runner_id) DO NOTHING;

END
$$;
