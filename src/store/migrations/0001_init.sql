-- Session Framework schema. Migrations are numbered and append-only: a released file is never edited; the
-- next change is the next number, proven on a populated database of this release (test/integration/migrations).
--
-- Layout: `sessions` keeps every session for its whole life (input, status, attempts, result) and is read
-- by the API; the queue's hot set lives apart from that history, as small tables whose only job is to be
-- claimed from: `session_ready` (queued and due now) and `session_scheduled` (queued for later: runAt,
-- retry backoff). A claim reads the ready table through one index in claim order, so its only sensible
-- plan is that index whatever the statistics say and however long the history grows. Triggers on
-- `sessions` keep the hot set in step with the status, so every path (enqueue, claim, cancel, retry,
-- recovery, hand-back) obeys one rule: a session is in the hot set exactly while it is queued.

CREATE TABLE sessions (
  id                uuid PRIMARY KEY,
  type              text NOT NULL,
  input             jsonb NOT NULL DEFAULT '{}'::jsonb,
  status            text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'error', 'cancelled')),
  priority          integer NOT NULL DEFAULT 0,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  run_at            timestamptz NOT NULL DEFAULT now(),
  claimed_by        text,
  claimed_at        timestamptz,
  finished_at       timestamptz,
  attempt           integer NOT NULL DEFAULT 0,
  max_attempts      integer NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
  retry_on          text[] NOT NULL DEFAULT '{error}',
  timeout_ms        integer NOT NULL DEFAULT 60000,
  lease_token       uuid,
  lease_expires_at  timestamptz,
  cancel_requested  boolean NOT NULL DEFAULT false,
  result            jsonb,
  error_message     text,
  artifacts         jsonb NOT NULL DEFAULT '[]'::jsonb,
  artifact_options  jsonb NOT NULL DEFAULT '{"screenshot":"on-failure","trace":"off"}'::jsonb,
  attempts          jsonb NOT NULL DEFAULT '[]'::jsonb,
  idempotency_key   text
);

-- Keys are unique where set; sessions without one add no index entry.
CREATE UNIQUE INDEX sessions_idempotency_key_idx ON sessions (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Listing newest first (ids are time-ordered UUIDv7). Queued and final statuses apart. No index on
-- `sessions` covers the running sessions alone: with statistics taken while few ran, the planner would take
-- such an index for a few rows and read all of them for every completion (session_running holds them).
CREATE INDEX sessions_queued_list_idx ON sessions (id) WHERE status = 'queued';
CREATE INDEX sessions_final_list_idx ON sessions (status, id) WHERE status IN ('succeeded', 'failed', 'error', 'cancelled');
CREATE INDEX sessions_type_list_idx ON sessions (type, id);
CREATE INDEX sessions_runner_list_idx ON sessions (claimed_by, id);
-- Recently finished sessions (the recent failure-rate window) without walking the whole history.
CREATE INDEX sessions_finished_idx ON sessions (finished_at) WHERE finished_at IS NOT NULL;

-- Queued sessions that are due: what a claim picks from, highest priority first, FIFO within a priority.
-- One row per session, narrow, no foreign key (the triggers below are its only writers besides the claim).
CREATE TABLE session_ready (
  id         uuid PRIMARY KEY,
  type       text NOT NULL,
  priority   integer NOT NULL,
  created_at timestamptz NOT NULL,
  run_at     timestamptz NOT NULL -- when it became due (the queue-age metrics count from here)
);
CREATE INDEX session_ready_claim_idx ON session_ready (type, priority DESC, created_at, id);

-- Queued sessions not due yet; moved to session_ready when their time comes (sfw_promote_due).
CREATE TABLE session_scheduled (
  id         uuid PRIMARY KEY,
  type       text NOT NULL,
  priority   integer NOT NULL,
  created_at timestamptz NOT NULL,
  run_at     timestamptz NOT NULL
);
CREATE INDEX session_scheduled_due_idx ON session_scheduled (run_at);

-- Running sessions by runner: the database's max-concurrency count, the reaper's scan, fleet counts. One
-- row per running session (the lease itself stays on the session).
CREATE TABLE session_running (
  id        uuid PRIMARY KEY,
  runner_id text NOT NULL,
  type      text NOT NULL,
  priority  integer NOT NULL
);
CREATE INDEX session_running_runner_idx ON session_running (runner_id);

CREATE TABLE runner_health (
  runner_id               text PRIMARY KEY,
  status                  text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'draining', 'stopped')),
  last_heartbeat          timestamptz NOT NULL DEFAULT now(),
  active_sessions         integer NOT NULL DEFAULT 0,
  total_sessions_executed bigint NOT NULL DEFAULT 0,
  total_failures          bigint NOT NULL DEFAULT 0,
  uptime_seconds          bigint NOT NULL DEFAULT 0,
  started_at              timestamptz NOT NULL DEFAULT now(),
  max_concurrency         integer NOT NULL DEFAULT 3,
  effective_concurrency   integer,
  hostname                text,
  version                 text,
  memory_rss_bytes        bigint,
  browser_memory_bytes    bigint,
  created_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scheduler_config (
  id               boolean PRIMARY KEY DEFAULT true CHECK (id),
  max_concurrency  integer NOT NULL DEFAULT 3 CHECK (max_concurrency >= 1),
  poll_interval_ms integer NOT NULL DEFAULT 5000 CHECK (poll_interval_ms >= 50),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO scheduler_config (id) VALUES (true);

-- Fleet-wide session statistics, kept by triggers so every API replica reads the same numbers and reading
-- them never walks the history. Counters are cumulative (Prometheus counters and histograms) and sharded
-- by backend so concurrent claims and completions rarely wait on the same counter row.
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

CREATE FUNCTION sfw_stats_bounds(p_kind text) RETURNS double precision[] LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE p_kind
    WHEN 'claim_wait' THEN ARRAY[0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600]::double precision[]
    WHEN 'duration' THEN ARRAY[0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]::double precision[]
    ELSE ARRAY[]::double precision[]
  END
$$;

-- Retry delay after a finished attempt: exponential from 1 s, capped at 5 min, with jitter.
CREATE FUNCTION sfw_retry_delay(p_attempt integer) RETURNS interval LANGUAGE sql VOLATILE AS $$
  SELECT make_interval(secs => least(300, power(2, least(p_attempt - 1, 16))) * (0.5 + random() / 2))
$$;

-- Does this outcome go back to the queue? (retryable status, attempts left, not cancelled.) The one retry
-- rule: completions and the reaper both ask it.
CREATE FUNCTION sfw_retries(p_status text, p_retry_on text[], p_attempt integer, p_max_attempts integer,
                            p_cancel_requested boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT p_status = ANY (p_retry_on) AND p_attempt < p_max_attempts AND NOT p_cancel_requested
         AND p_status <> 'cancelled'
$$;

-- The hot set follows the status. Rows leaving `queued` (claimed, cancelled) leave it; rows entering it
-- (enqueue, retry, recovery, hand-back) or changing their place while queued (priority, run_at) are filed
-- as ready or scheduled by their run_at. Likewise running sessions in session_running. Statements that
-- change no status (lease renewals, artifacts) find nothing to do. Ids travel as arrays so each statement
-- is a primary-key lookup whatever its size.
CREATE FUNCTION sfw_queue_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO session_ready (id, type, priority, created_at, run_at)
  SELECT id, type, priority, created_at, run_at FROM new_rows WHERE status = 'queued' AND run_at <= now();
  INSERT INTO session_scheduled (id, type, priority, created_at, run_at)
  SELECT id, type, priority, created_at, run_at FROM new_rows WHERE status = 'queued' AND run_at > now();
  INSERT INTO session_running (id, runner_id, type, priority)
  SELECT id, coalesce(claimed_by, ''), type, priority FROM new_rows WHERE status = 'running';
  RETURN NULL;
END
$$;

CREATE FUNCTION sfw_queue_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_out uuid[];
  v_stopped uuid[];
BEGIN
  SELECT array_agg(o.id) INTO v_stopped
  FROM old_rows o JOIN new_rows n ON n.id = o.id
  WHERE o.status = 'running' AND n.status <> 'running';
  IF v_stopped IS NOT NULL THEN
    DELETE FROM session_running WHERE id = ANY (v_stopped);
  END IF;
  INSERT INTO session_running (id, runner_id, type, priority)
  SELECT n.id, coalesce(n.claimed_by, ''), n.type, n.priority
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE n.status = 'running' AND o.status <> 'running'
  ON CONFLICT (id) DO UPDATE SET runner_id = excluded.runner_id;

  SELECT array_agg(o.id) INTO v_out
  FROM old_rows o JOIN new_rows n ON n.id = o.id
  WHERE o.status = 'queued'
    AND (n.status <> 'queued' OR n.run_at <> o.run_at OR n.priority <> o.priority OR n.type <> o.type);
  IF v_out IS NOT NULL THEN
    DELETE FROM session_ready WHERE id = ANY (v_out);
    DELETE FROM session_scheduled WHERE id = ANY (v_out);
  END IF;
  INSERT INTO session_ready (id, type, priority, created_at, run_at)
  SELECT n.id, n.type, n.priority, n.created_at, n.run_at
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE n.status = 'queued' AND n.run_at <= now()
    AND (o.status <> 'queued' OR n.run_at <> o.run_at OR n.priority <> o.priority OR n.type <> o.type)
  ON CONFLICT (id) DO NOTHING;
  INSERT INTO session_scheduled (id, type, priority, created_at, run_at)
  SELECT n.id, n.type, n.priority, n.created_at, n.run_at
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE n.status = 'queued' AND n.run_at > now()
    AND (o.status <> 'queued' OR n.run_at <> o.run_at OR n.priority <> o.priority OR n.type <> o.type)
  ON CONFLICT (id) DO NOTHING;
  RETURN NULL;
END
$$;

CREATE FUNCTION sfw_queue_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_out uuid[];
BEGIN
  SELECT array_agg(id) INTO v_out FROM old_rows WHERE status IN ('queued', 'running');
  IF v_out IS NOT NULL THEN
    DELETE FROM session_ready WHERE id = ANY (v_out);
    DELETE FROM session_scheduled WHERE id = ANY (v_out);
    DELETE FROM session_running WHERE id = ANY (v_out);
  END IF;
  RETURN NULL;
END
$$;

-- Statistics from a statement's transitions: claims (claim_wait), ends of runs (duration) and final statuses.
-- Keys are written in sorted order so two statements sharing a shard lock rows in the same order.
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
BEGIN
  -- The per-minute row first, in its own statement: every statistics write takes its shard's minute row
  -- before any counter row, so two transactions sharing a shard queue on it instead of deadlocking.
  WITH t AS (
    SELECT o.status AS old_status, n.status AS new_status,
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
    duration_sum = m.duration_sum + excluded.duration_sum;
  IF NOT FOUND THEN RETURN NULL; END IF;

  WITH t AS (
    SELECT n.type, o.status AS old_status, n.status AS new_status,
           extract(epoch FROM n.claimed_at - o.run_at)::double precision AS wait_s,
           extract(epoch FROM n.finished_at - n.claimed_at)::double precision AS run_s
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE o.status <> n.status
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
  RETURN NULL;
END
$$;

CREATE TRIGGER sessions_queue_insert AFTER INSERT ON sessions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sfw_queue_after_insert();
CREATE TRIGGER sessions_queue_update AFTER UPDATE ON sessions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sfw_queue_after_update();
CREATE TRIGGER sessions_queue_delete AFTER DELETE ON sessions
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sfw_queue_after_delete();
CREATE TRIGGER sessions_stats_insert AFTER INSERT ON sessions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sfw_stats_after_insert();
CREATE TRIGGER sessions_stats_update AFTER UPDATE ON sessions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sfw_stats_after_update();

-- Moves scheduled sessions whose time has come to the ready table (bounded per call; concurrent callers
-- skip each other's rows). Returns how many moved.
CREATE FUNCTION sfw_promote_due(p_limit integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_ids uuid[];
  v_n integer;
BEGIN
  SELECT array_agg(id) INTO v_ids FROM (
    SELECT id FROM session_scheduled WHERE run_at <= now() ORDER BY run_at LIMIT p_limit FOR UPDATE SKIP LOCKED
  ) d;
  IF v_ids IS NULL THEN RETURN 0; END IF;
  WITH moved AS (
    DELETE FROM session_scheduled WHERE id = ANY (v_ids) RETURNING id, type, priority, created_at, run_at
  )
  INSERT INTO session_ready (id, type, priority, created_at, run_at)
  SELECT id, type, priority, created_at, run_at FROM moved ON CONFLICT (id) DO NOTHING;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN v_n;
END
$$;

-- The claim, for one or several runners serving the same types: up to sum(p_counts) ready sessions,
-- highest priority first, FIFO within a priority, each with a fresh lease, handed out in claim order (the
-- first runner's count first). Each type is read through session_ready_claim_idx in claim order and stops
-- after the rows needed (a runner's other types cost nothing however deep their queue); the few
-- candidates are merged. One UPDATE for all the runners, so its triggers run once. The caller holds the
-- runners' locks and has counted their free slots. Answers per runner the sessions as it receives them
-- (ClaimedSession), in claim order, timestamps as the rest of the API writes them.
CREATE FUNCTION sfw_claim_many(p_runners text[], p_counts integer[], p_types text[], p_lease_ms integer)
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
      lease_expires_at = now() + make_interval(secs => p_lease_ms / 1000.0)
    WHERE s.id = ANY (v_ids) AND s.status = 'queued'
    RETURNING s.*
  )
  SELECT c.claimed_by,
         json_agg(json_build_object(
           'id', c.id, 'type', c.type, 'input', c.input, 'priority', c.priority, 'attempt', c.attempt,
           'maxAttempts', c.max_attempts, 'timeoutMs', c.timeout_ms, 'leaseToken', c.lease_token,
           'leaseExpiresAt', to_char(c.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'createdAt', to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'artifactOptions', c.artifact_options)
         ORDER BY c.priority DESC, c.created_at, c.id)
  FROM c GROUP BY c.claimed_by;
END
$$;

-- The claim for one runner (see sfw_claim_many).
CREATE FUNCTION sfw_claim(p_runner text, p_types text[], p_n integer, p_lease_ms integer)
RETURNS json LANGUAGE sql AS $$
  SELECT coalesce((SELECT c.claimed FROM sfw_claim_many(ARRAY[p_runner], ARRAY[p_n], p_types, p_lease_ms) c),
                  '[]'::json)
$$;

-- The completion: a batch of outcomes, each fenced by its lease token (only the holder of the current lease
-- of a running session can end it). Whether to retry is decided on the row the UPDATE locked (with backoff
-- while attempts remain). Items are joined by primary key in id order, so concurrent batches lock alike.
-- Per-runner totals are added here except for the runners in p_skip_runners, whose caller folds them into
-- its own runner_health write. Accepted ids go out on sfw_done, comma-separated, at most 200 per message.
CREATE FUNCTION sfw_complete(p_items jsonb, p_skip_runners text[])
RETURNS TABLE (id uuid, status text, claimed_by text, failed boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_ids uuid[];
  v_status text[];
  v_by text[];
  v_failed boolean[];
BEGIN
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
      attempts = s.attempts || jsonb_build_object(
        'attempt', s.attempt, 'runnerId', s.claimed_by, 'status', i.st, 'errorMessage', i.err,
        'startedAt', s.claimed_at, 'finishedAt', now())
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

-- A runner's free slots: what it asks for, within its max concurrency (sent with its claim, else the one
-- it registered, else the scheduler's) less the sessions it runs now. The one rule by which the database
-- holds every runner at or under its max concurrency; its callers hold the runner's lock.
CREATE FUNCTION sfw_free_slots(p_runner text, p_slots integer, p_max integer) RETURNS integer
LANGUAGE sql STABLE AS $$
  SELECT least(p_slots,
               coalesce(p_max, (SELECT h.max_concurrency FROM runner_health h WHERE h.runner_id = p_runner),
                        (SELECT c.max_concurrency FROM scheduler_config c))
               - (SELECT count(*) FROM session_running s WHERE s.runner_id = p_runner))::integer
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
CREATE FUNCTION sfw_exchange_many(p_requests jsonb, p_lease_ms integer)
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
      uptime_seconds = greatest(0, extract(epoch FROM now() - coalesce(x.started, h.started_at)))::bigint,
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

-- One runner's exchange (see sfw_exchange_many).
CREATE FUNCTION sfw_exchange(p_runner text, p_done jsonb, p_types text[], p_slots integer, p_max integer,
                             p_lease_ms integer, p_hostname text, p_version text, p_started_at timestamptz)
RETURNS TABLE (done_ids uuid[], done_status text[], claimed json)
LANGUAGE sql AS $$
  SELECT e.done_ids, e.done_status, e.claimed
  FROM sfw_exchange_many(jsonb_build_array(jsonb_build_object(
         'runner', p_runner, 'done', p_done, 'types', p_types, 'slots', p_slots, 'max', p_max,
         'hostname', p_hostname, 'version', p_version, 'startedAt', p_started_at)), p_lease_ms) e
$$;

-- Claims for runners waiting in one API replica (their long-polls are held in memory, not in the
-- database): one call per wake for many waiters, longest waiting first. A runner whose exchange is in
-- progress elsewhere is skipped (its lock is taken without waiting). Once a claim comes back short, its
-- types have nothing left for this pass and later waiters of only those types are not tried. Answers one
-- row per runner that got sessions, then one row (runner_id NULL) with the asked types that have nothing
-- ready and the next scheduled time, so the replica knows when to look again.
CREATE FUNCTION sfw_claim_waiting(p_waiters jsonb, p_lease_ms integer)
RETURNS TABLE (runner_id text, claimed json, empty_types text[], next_run_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  w record;
  v_empty text[] := '{}';
  v_all text[];
  v_free integer;
  v_json json;
  v_got integer;
BEGIN
  PERFORM sfw_promote_due(1000);
  SELECT array_agg(DISTINCT t) INTO v_all
  FROM jsonb_array_elements(p_waiters) e, jsonb_array_elements_text(e -> 'types') t;
  SELECT coalesce(array_agg(t), '{}') INTO v_empty FROM unnest(v_all) t
  WHERE NOT EXISTS (SELECT 1 FROM session_ready q WHERE q.type = t);
  FOR w IN SELECT x.runner, x.types, x.slots, x.max
           FROM jsonb_to_recordset(p_waiters) AS x(runner text, types text[], slots integer, max integer) LOOP
    CONTINUE WHEN w.types <@ v_empty;
    CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtextextended('sfw.claim:' || w.runner, 0));
    v_free := sfw_free_slots(w.runner, w.slots, w.max);
    CONTINUE WHEN v_free <= 0;
    v_json := sfw_claim(w.runner, w.types, v_free, p_lease_ms);
    v_got := json_array_length(v_json);
    IF v_got < v_free THEN
      v_empty := v_empty || w.types;
    END IF;
    IF v_got > 0 THEN
      runner_id := w.runner;
      claimed := v_json;
      RETURN NEXT;
    END IF;
  END LOOP;
  runner_id := NULL;
  claimed := NULL;
  SELECT array_agg(DISTINCT t) INTO empty_types FROM unnest(v_empty) t;
  SELECT min(run_at) INTO next_run_at FROM session_scheduled;
  RETURN NEXT;
END
$$;

-- Liveness of many runners in one statement (runner_health.last_heartbeat is "updated on each poll"; a
-- replica writes the polls it saw once per interval instead of once per poll). Registers unknown runners.
-- A poll older than the row's last word (a stop recorded after it) changes nothing.
CREATE FUNCTION sfw_runners_seen(p_runners jsonb) RETURNS void LANGUAGE sql AS $$
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
      version = coalesce(x.version, r.version),
      uptime_seconds = greatest(0, extract(epoch FROM x.at - r.started_at))::bigint
    FROM x WHERE r.runner_id = x.runner AND r.last_heartbeat < x.at
    RETURNING r.runner_id
  )
  INSERT INTO runner_health (runner_id, max_concurrency, hostname, version, started_at, last_heartbeat)
  SELECT x.runner, coalesce(x.max, (SELECT max_concurrency FROM scheduler_config)), x.hostname, x.version,
         coalesce(x."startedAt", x.at), x.at
  FROM x WHERE NOT EXISTS (SELECT 1 FROM runner_health r WHERE r.runner_id = x.runner)
  ON CONFLICT (runner_id) DO NOTHING
$$;

-- Heartbeats of many runners in one call: each runner's runner_health row (registered when new), then the
-- leases each still holds renewed, fenced by token and runner. Answers per runner the sessions it holds
-- that were cancelled and the ones whose lease it no longer holds.
CREATE FUNCTION sfw_heartbeats(p_beats jsonb, p_lease_ms integer)
RETURNS TABLE (runner_id text, cancel uuid[], lost uuid[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  -- Leases first, then the runners' rows: the order every completion and claim takes its locks in
  -- (sessions, then runner_health), so a heartbeat batch and an exchange never wait on each other in a circle.
  RETURN QUERY
  WITH refs AS (
    SELECT x.runner, (l ->> 'id')::uuid AS id, (l ->> 'leaseToken')::uuid AS token
    FROM jsonb_to_recordset(p_beats) AS x(runner text, sessions jsonb), jsonb_array_elements(x.sessions) l
    ORDER BY 2
  ), renewed AS (
    UPDATE sessions s SET lease_expires_at = now() + make_interval(secs => p_lease_ms / 1000.0), updated_at = now()
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
                                                   rss bigint, browser bigint, effective integer)
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
      uptime_seconds = greatest(0, extract(epoch FROM now() - coalesce(b."startedAt", r.started_at)))::bigint,
      memory_rss_bytes = coalesce(b.rss, r.memory_rss_bytes),
      browser_memory_bytes = coalesce(b.browser, r.browser_memory_bytes),
      effective_concurrency = coalesce(b.effective, r.effective_concurrency)
    FROM b WHERE r.runner_id = b.runner
    RETURNING r.runner_id
  )
  INSERT INTO runner_health (runner_id, status, active_sessions, max_concurrency, hostname, version, started_at,
                             memory_rss_bytes, browser_memory_bytes, effective_concurrency, last_heartbeat)
  SELECT b.runner, coalesce(b.status, 'running'), b.active, b.max, b.hostname, b.version,
         coalesce(b."startedAt", now()), b.rss, b.browser, b.effective, now()
  FROM b WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.runner_id = b.runner)
  ON CONFLICT (runner_id) DO NOTHING;

END
$$;
