-- Named states and per-key limits.
--
-- sessions.state_options: the session's named-state options ({use?, save?, overwrite?}); NULL when it has none.
-- sessions.concurrency_key: the key the session's per-key limits count it under; NULL: no key.
ALTER TABLE sessions
  ADD COLUMN state_options jsonb,
  ADD COLUMN concurrency_key text;

-- The claim (see 0002): it also carries the session's state options (null when it has none).
CREATE OR REPLACE FUNCTION sfw_claim_many(p_runners text[], p_counts integer[], p_types text[], p_lease_ms integer)
RETURNS TABLE (runner_id text, claimed json) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_total integer;
  v_ids uuid[];
  v_to text[];
BEGIN
  SELECT sum(greatest(n, 0)) INTO v_total FROM unnest(p_counts) AS n;
  IF v_total IS NULL OR v_total <= 0 THEN RETURN; END IF;
  PERFORM sfw_promote_due(1000);
  SELECT array_agg(c.id ORDER BY c.priority DESC, c.created_at, c.id) INTO v_ids FROM (
    SELECT r.id, r.priority, r.created_at FROM unnest(p_types) AS t(type)
    CROSS JOIN LATERAL (
      SELECT q.id, q.priority, q.created_at FROM session_ready q
      WHERE q.type = t.type
      ORDER BY q.priority DESC, q.created_at, q.id
      LIMIT v_total
      FOR UPDATE SKIP LOCKED
    ) r
    ORDER BY r.priority DESC, r.created_at, r.id
    LIMIT v_total
  ) c;
  IF v_ids IS NULL THEN RETURN; END IF;
  -- The runner of each picked session, position by position.
  SELECT array_agg(u.runner ORDER BY u.ord, k) INTO v_to
  FROM unnest(p_runners, p_counts) WITH ORDINALITY AS u(runner, n, ord), generate_series(1, greatest(u.n, 0)) AS k;
  RETURN QUERY
  WITH c AS (
    UPDATE sessions s SET
      status = 'running',
      claimed_by = v_to[array_position(v_ids, s.id)],
      claimed_at = now(),
      updated_at = now(),
      attempt = s.attempt + 1,
      lease_token = gen_random_uuid(),
      lease_expires_at = now() + make_interval(secs => p_lease_ms / 1000.0),
      confirmed_at = NULL,
      returned = false
    WHERE s.id = ANY (v_ids) AND s.status = 'queued'
    RETURNING s.*
  )
  SELECT c.claimed_by,
         json_agg(json_build_object(
           'id', c.id, 'type', c.type, 'input', c.input, 'priority', c.priority, 'attempt', c.attempt,
           'maxAttempts', c.max_attempts, 'timeoutMs', c.timeout_ms, 'leaseToken', c.lease_token,
           'leaseExpiresAt', sfw_time(c.lease_expires_at), 'createdAt', sfw_time(c.created_at),
           'artifactOptions', c.artifact_options, 'browser', c.browser_options, 'state', c.state_options)
         ORDER BY c.priority DESC, c.created_at, c.id)
  FROM c GROUP BY c.claimed_by;
END
$$;
