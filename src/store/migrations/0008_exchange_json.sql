-- The exchange answers in one row: the accepted completions (ids and statuses) and the claimed sessions as
-- the JSON the runner receives, built here in claim order so the API sends it through instead of parsing
-- rows and serializing them again. Same work otherwise (0005-0007).
DROP FUNCTION sfw_exchange(text, jsonb, text[], integer, integer, integer, text, text, timestamptz);
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
             'leaseExpiresAt', r.lease_expires_at, 'createdAt', r.created_at,
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
