-- Claims a runner never confirmed, one lock order for every writer of running sessions, histogram buckets
-- as Prometheus counts them, claim statistics that count each attempt once, idempotency keys bound to
-- their request, the session types runners serve, and per-session browser options.
--
-- A claim is confirmed when its runner first names the session (a heartbeat renewing its lease, or its
-- completion). A lease that lapses unconfirmed means the answer to the claim may never have reached the
-- runner (the API died after the commit, the reply was lost after the kernel took it): the session goes
-- back to the queue without spending an attempt, at most sfw_unconfirmed_limit() times, so a session that
-- kills its runner before the first heartbeat still ends.
ALTER TABLE sessions
  ADD COLUMN confirmed_at timestamptz,
  ADD COLUMN unconfirmed_returns integer NOT NULL DEFAULT 0,
  -- Set while a session is back in the queue without having spent its attempt (hand-back, unconfirmed
  -- claim): its next claim is the same attempt and is not counted as a new claim in the statistics.
  ADD COLUMN returned boolean NOT NULL DEFAULT false;

-- The hash of the request that made a session with an idempotency key (its type, input, priority, runAt,
-- timeoutMs, maxAttempts, retryOn and artifacts, with the defaults applied): a repeat of the key with
-- another request is refused instead of answered with this session. NULL for sessions without a key, and
-- for the ones enqueued before this column (their repeats are answered as before).
ALTER TABLE sessions ADD COLUMN request_hash text;

-- The session types a runner serves, as its heartbeats name them ('{}': not told, e.g. an older runner).
ALTER TABLE runner_health ADD COLUMN types text[] NOT NULL DEFAULT '{}';

-- Per-session browser options (viewport, locale, timezoneId, userAgent, extraHTTPHeaders, javaScriptEnabled),
-- applied to the session's browser context. NULL: the runner's defaults.
ALTER TABLE sessions ADD COLUMN browser_options jsonb;

-- Sessions running at upgrade were claimed under the release without confirmation: treat them as confirmed
-- (the earlier rule: a lapsed lease spends the attempt).
UPDATE sessions s SET confirmed_at = s.claimed_at FROM session_running r WHERE s.id = r.id;

-- A time as the API writes every time: UTC, milliseconds, `Z` (2026-12-01T23:02:56.802Z).
CREATE FUNCTION sfw_time(p_at timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- One entry of a session's attempt history, ending now: the one builder every writer of the history uses.
CREATE FUNCTION sfw_attempt(p_attempt integer, p_runner text, p_status text, p_error text, p_started timestamptz)
RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('attempt', p_attempt, 'runnerId', p_runner, 'status', p_status,
                            'errorMessage', p_error, 'startedAt', sfw_time(p_started), 'finishedAt', sfw_time(now()))
$$;

CREATE FUNCTION sfw_unconfirmed_limit() RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 3 $$;

-- The histogram bucket of a value as Prometheus counts it: the index of the first bound >= value (0-based;
-- n, past the last bound, is +Inf). width_bucket files a value equal to a bound one bucket up.
CREATE FUNCTION sfw_stats_bucket(p_kind text, p_value double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
  SELECT count(*)::smallint FROM unnest(sfw_stats_bounds(p_kind)) AS b WHERE b < p_value
$$;
-- Rows written by the release before counted width_bucket (bounds <= value): the same index except for a
-- value exactly on a bound, which stays one bucket up. The readers use the new meaning from now on.

CREATE OR REPLACE FUNCTION sfw_stats_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The per-minute row first, in its own statement: every statistics write takes its shard's minute row
  -- before any counter row, so two transactions sharing a shard queue on it instead of deadlocking.
  -- A claim of a returned session (handed back, or its claim never confirmed) repeats the attempt already
  -- counted: it is not a new claim and its wait is not counted again.
  WITH t AS (
    SELECT o.status AS old_status, n.status AS new_status,
           (o.status = 'queued' AND n.status = 'running' AND NOT o.returned) AS claimed,
           extract(epoch FROM n.claimed_at - o.run_at)::double precision AS wait_s,
           extract(epoch FROM n.finished_at - n.claimed_at)::double precision AS run_s
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE o.status <> n.status
  )
  INSERT INTO session_minute_stats AS m (minute, shard, entered_queue, left_queue, claimed, claim_wait_sum,
                                         finished, failed, duration_sum)
  SELECT date_trunc('minute', now()), (pg_backend_pid() % 8)::smallint,
         count(*) FILTER (WHERE new_status = 'queued'),
         count(*) FILTER (WHERE old_status = 'queued'),
         count(*) FILTER (WHERE claimed),
         coalesce(sum(greatest(wait_s, 0)) FILTER (WHERE claimed), 0),
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
    duration_sum = m.duration_sum + excluded.duration_sum;
  IF NOT FOUND THEN RETURN NULL; END IF;

  WITH t AS (
    SELECT n.type, o.status AS old_status, n.status AS new_status,
           (o.status = 'queued' AND n.status = 'running' AND NOT o.returned) AS claimed,
           extract(epoch FROM n.claimed_at - o.run_at)::double precision AS wait_s,
           extract(epoch FROM n.finished_at - n.claimed_at)::double precision AS run_s
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE o.status <> n.status
  ), ev AS (
    SELECT 'claim_wait' AS kind, type, 'running' AS status, greatest(wait_s, 0) AS value FROM t
    WHERE claimed
    UNION ALL
    SELECT 'duration', type, new_status, greatest(run_s, 0) FROM t
    WHERE old_status = 'running' AND new_status IN ('succeeded', 'failed', 'error', 'cancelled') AND run_s IS NOT NULL
    UNION ALL
    SELECT 'finished', type, new_status, 0 FROM t
    WHERE new_status IN ('succeeded', 'failed', 'error', 'cancelled')
      AND old_status NOT IN ('succeeded', 'failed', 'error', 'cancelled')
  )
  INSERT INTO session_stats AS s (kind, type, status, bucket, shard, count, sum)
  SELECT ev.kind, ev.type, ev.status,
         CASE WHEN ev.kind = 'finished' THEN 0 ELSE sfw_stats_bucket(ev.kind, ev.value) END,
         (pg_backend_pid() % 8)::smallint, count(*), coalesce(sum(ev.value), 0)
  FROM ev
  GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (kind, type, status, bucket, shard)
  DO UPDATE SET count = s.count + excluded.count, sum = s.sum + excluded.sum;
  RETURN NULL;
END
$$;

-- Locks running sessions in id order before a writer updates them: a batch UPDATE joined to its items
-- locks rows in whatever order its plan reads them (a hash join over `sessions` reads them in heap order),
-- so two writers of the same sessions could lock them in opposite orders. Every writer of several running
-- sessions at once (completions, heartbeats, hand-backs, the reaper) takes this first.
CREATE FUNCTION sfw_lock_sessions(p_ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  -- The row locks are taken above the sort, so in id order whatever the plan reads first.
  PERFORM 1 FROM (SELECT s.id FROM sessions s WHERE s.id = ANY (p_ids) ORDER BY s.id FOR NO KEY UPDATE OF s) l;
END
$$;

-- The claim (see 0001): a fresh claim is unconfirmed and spends its attempt; `returned` is cleared;
-- it carries the session's browser options (null when it has none).
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
           'artifactOptions', c.artifact_options, 'browser', c.browser_options)
         ORDER BY c.priority DESC, c.created_at, c.id)
  FROM c GROUP BY c.claimed_by;
END
$$;

-- The completion (see 0001), its rows locked in id order first (sfw_lock_sessions).
CREATE OR REPLACE FUNCTION sfw_complete(p_items jsonb, p_skip_runners text[])
RETURNS TABLE (id uuid, status text, claimed_by text, failed boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_ids uuid[];
  v_status text[];
  v_by text[];
  v_failed boolean[];
BEGIN
  PERFORM sfw_lock_sessions(ARRAY(SELECT (x ->> 'id')::uuid FROM jsonb_array_elements(p_items) x));
  WITH i AS (
    SELECT x.id, x."leaseToken" AS token, x.status AS st, x.result AS res, x."errorMessage" AS err
    FROM jsonb_to_recordset(p_items) AS x(id uuid, "leaseToken" uuid, status text, result jsonb, "errorMessage" text)
    ORDER BY x.id
  ), u AS (
    UPDATE sessions s SET
      status = CASE WHEN sfw_retries(i.st, s.retry_on, s.attempt, s.max_attempts, s.cancel_requested) THEN 'queued' ELSE i.st END,
      result = CASE WHEN sfw_retries(i.st, s.retry_on, s.attempt, s.max_attempts, s.cancel_requested) THEN NULL ELSE i.res END,
      error_message = i.err,
      updated_at = now(),
      finished_at = CASE WHEN sfw_retries(i.st, s.retry_on, s.attempt, s.max_attempts, s.cancel_requested) THEN NULL ELSE now() END,
      run_at = CASE WHEN sfw_retries(i.st, s.retry_on, s.attempt, s.max_attempts, s.cancel_requested) THEN now() + sfw_retry_delay(s.attempt) ELSE s.run_at END,
      claimed_by = CASE WHEN sfw_retries(i.st, s.retry_on, s.attempt, s.max_attempts, s.cancel_requested) THEN NULL ELSE s.claimed_by END,
      lease_expires_at = NULL,
      confirmed_at = coalesce(s.confirmed_at, now()),
      attempts = s.attempts || sfw_attempt(s.attempt, s.claimed_by, i.st, i.err, s.claimed_at)
    FROM i
    WHERE s.id = i.id AND s.lease_token = i.token AND s.status = 'running'
    -- The runner that ran it, from the attempt just recorded (claimed_by is cleared on a retry).
    RETURNING s.id, s.status, i.st IN ('failed', 'error') AS failed, s.attempts -> -1 ->> 'runnerId' AS claimed_by
  )
  SELECT array_agg(u.id), array_agg(u.status), array_agg(u.claimed_by), array_agg(u.failed)
  INTO v_ids, v_status, v_by, v_failed
  FROM u;

  -- Runner totals after the sessions and their statistics: the lock order of every writer (sessions, then
  -- statistics, then runner_health), so no two of them wait on each other in a circle.
  UPDATE runner_health rh SET
    total_sessions_executed = rh.total_sessions_executed + c.n,
    total_failures = rh.total_failures + c.f
  FROM (SELECT b.by, count(*) AS n, count(*) FILTER (WHERE b.failed) AS f
        FROM unnest(v_by, v_failed) AS b(by, failed)
        WHERE NOT (b.by = ANY (coalesce(p_skip_runners, '{}'))) GROUP BY b.by ORDER BY b.by) c
  WHERE rh.runner_id = c.by;
  IF v_ids IS NULL THEN RETURN; END IF;
  FOR k IN 0 .. (array_length(v_ids, 1) - 1) / 200 LOOP
    PERFORM pg_notify('sfw_done', array_to_string(v_ids[k * 200 + 1 : (k + 1) * 200], ','));
  END LOOP;
  RETURN QUERY SELECT * FROM unnest(v_ids, v_status, v_by, v_failed);
END
$$;

-- Heartbeats (see 0001): the leases' rows locked in id order first; a renewal confirms the claim; each
-- runner's row records the session types it serves.
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

-- One runner_health accounting of uptime: derived from the row itself (last word minus start), so no
-- writer restates the formula.
ALTER TABLE runner_health DROP COLUMN uptime_seconds;
ALTER TABLE runner_health ADD COLUMN uptime_seconds bigint
  GENERATED ALWAYS AS (greatest(0, extract(epoch FROM last_heartbeat - started_at))::bigint) STORED;

-- The writers of runner_health without their own uptime (see 0001).
-- Liveness of many runners in one statement (runner_health.last_heartbeat is "updated on each poll"; a
-- replica writes the polls it saw once per interval instead of once per poll). Registers unknown runners.
-- A poll older than the row's last word (a stop recorded after it) changes nothing.
CREATE OR REPLACE FUNCTION sfw_runners_seen(p_runners jsonb) RETURNS void LANGUAGE sql AS $$
  WITH x AS (
    SELECT * FROM jsonb_to_recordset(p_runners)
      AS x(runner text, max integer, hostname text, version text, "startedAt" timestamptz, at timestamptz)
    ORDER BY x.runner
  ), u AS (
    UPDATE runner_health r SET
      last_heartbeat = x.at,
      max_concurrency = coalesce(x.max, r.max_concurrency),
      status = CASE WHEN r.status = 'stopped' THEN 'running' ELSE r.status END,
      hostname = coalesce(x.hostname, r.hostname),
      version = coalesce(x.version, r.version)
    FROM x WHERE r.runner_id = x.runner AND r.last_heartbeat < x.at
    RETURNING r.runner_id
  )
  INSERT INTO runner_health (runner_id, max_concurrency, hostname, version, started_at, last_heartbeat)
  SELECT x.runner, coalesce(x.max, (SELECT max_concurrency FROM scheduler_config)), x.hostname, x.version,
         coalesce(x."startedAt", x.at), x.at
  FROM x WHERE NOT EXISTS (SELECT 1 FROM runner_health r WHERE r.runner_id = x.runner)
  ON CONFLICT (runner_id) DO NOTHING
$$;

-- Runners' exchanges with the queue in one call (one transaction, one commit, one round trip): the
-- sessions each finished, then a claim of up to its free slots. Several runners' exchanges that reach an
-- API replica together go in one call, so their completions are one statement and each group of runners
-- serving the same types one claim. The runners' locks (taken in runner order) serialize each runner's
-- exchanges, and each statement after them sees the previous ones' effects, so the count of a runner's
-- running sessions is exact: the database, not only the runner, keeps it at or under its max concurrency,
-- and the completions free their slots before the claim counts. One request per runner. Lock order of
-- every writer: sessions, then statistics, then runner_health (written last, for all the runners at once).
-- Answers one row per request: its accepted completions and its claimed sessions.
CREATE OR REPLACE FUNCTION sfw_exchange_many(p_requests jsonb, p_lease_ms integer)
RETURNS TABLE (runner_id text, done_ids uuid[], done_status text[], claimed json)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  r record;
  v_runners text[];
  v_done jsonb;
  v_claims jsonb := '{}';
  v_ids uuid[] := '{}';
  v_status text[] := '{}';
  v_by text[] := '{}';
  v_failed boolean[] := '{}';
BEGIN
  SELECT array_agg(x.runner ORDER BY x.runner) INTO v_runners
  FROM jsonb_to_recordset(p_requests) AS x(runner text);
  IF v_runners IS NULL THEN RETURN; END IF;
  FOR r IN SELECT unnest(v_runners) AS runner LOOP
    PERFORM pg_advisory_xact_lock(hashtextextended('sfw.claim:' || r.runner, 0));
  END LOOP;

  SELECT jsonb_agg(i) INTO v_done
  FROM jsonb_array_elements(p_requests) e,
       jsonb_array_elements(CASE WHEN jsonb_typeof(e -> 'done') = 'array' THEN e -> 'done' ELSE '[]' END) i;
  IF v_done IS NOT NULL THEN
    SELECT coalesce(array_agg(c.id), '{}'), coalesce(array_agg(c.status), '{}'),
           coalesce(array_agg(c.claimed_by), '{}'), coalesce(array_agg(c.failed), '{}')
    INTO v_ids, v_status, v_by, v_failed
    FROM sfw_complete(v_done, v_runners) c;
  END IF;

  -- Free slots per runner, then one claim per group of runners serving the same types.
  FOR r IN
    WITH x AS (
      SELECT e.v ->> 'runner' AS runner, (e.v ->> 'slots')::integer AS slots, (e.v ->> 'max')::integer AS max,
             e.ord, (SELECT array_agg(t ORDER BY t) FROM jsonb_array_elements_text(e.v -> 'types') t) AS types
      FROM jsonb_array_elements(p_requests) WITH ORDINALITY AS e(v, ord)
    ), f AS (
      SELECT x.runner, x.ord, x.types, sfw_free_slots(x.runner, x.slots, x.max) AS free FROM x
    )
    SELECT f.types, array_agg(f.runner ORDER BY f.ord) AS runners, array_agg(f.free ORDER BY f.ord) AS counts
    FROM f WHERE f.free > 0 AND f.types IS NOT NULL GROUP BY f.types
  LOOP
    SELECT v_claims || coalesce(jsonb_object_agg(c.runner_id, c.claimed), '{}') INTO v_claims
    FROM sfw_claim_many(r.runners, r.counts, r.types, p_lease_ms) c;
  END LOOP;

  -- The runners' rows last: registered when new, seen now, their totals added.
  WITH x AS (
    SELECT x.runner, x.max, x.hostname, x.version, x."startedAt" AS started,
           (SELECT count(*) FROM unnest(v_by) b WHERE b = x.runner)::integer AS n,
           (SELECT count(*) FROM unnest(v_by, v_failed) AS d(by, failed) WHERE d.by = x.runner AND d.failed)::integer AS f
    FROM jsonb_to_recordset(p_requests)
      AS x(runner text, max integer, hostname text, version text, "startedAt" timestamptz)
    ORDER BY x.runner
  ), u AS (
    UPDATE runner_health h SET
      last_heartbeat = now(),
      max_concurrency = coalesce(x.max, h.max_concurrency),
      status = CASE WHEN h.status = 'stopped' THEN 'running' ELSE h.status END,
      hostname = coalesce(x.hostname, h.hostname),
      version = coalesce(x.version, h.version),
      started_at = coalesce(x.started, h.started_at),
      total_sessions_executed = h.total_sessions_executed + x.n,
      total_failures = h.total_failures + x.f
    FROM x WHERE h.runner_id = x.runner
    RETURNING h.runner_id
  )
  INSERT INTO runner_health (runner_id, max_concurrency, hostname, version, started_at, last_heartbeat,
                             total_sessions_executed, total_failures)
  SELECT x.runner, coalesce(x.max, (SELECT c.max_concurrency FROM scheduler_config c)), x.hostname, x.version,
         coalesce(x.started, now()), now(), x.n, x.f
  FROM x WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.runner_id = x.runner)
  ON CONFLICT (runner_id) DO NOTHING;

  RETURN QUERY
  SELECT x.runner, d.ids, d.statuses, coalesce((v_claims -> x.runner)::json, '[]'::json)
  FROM (SELECT e.v ->> 'runner' AS runner, e.v -> 'done' AS done, e.ord
        FROM jsonb_array_elements(p_requests) WITH ORDINALITY AS e(v, ord)) x
  LEFT JOIN LATERAL (
    SELECT array_agg(a.id) AS ids, array_agg(a.status) AS statuses
    FROM unnest(v_ids, v_status) AS a(id, status)
    WHERE a.id IN (SELECT (i ->> 'id')::uuid
                   FROM jsonb_array_elements(CASE WHEN jsonb_typeof(x.done) = 'array' THEN x.done ELSE '[]' END) i)
  ) d ON true
  ORDER BY x.ord;
END
$$;
