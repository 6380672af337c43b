-- Session Framework schema. Migrations are numbered and append-only: never edit a released file.

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
  idempotency_key   text UNIQUE
);

-- The ready queue: only queued rows, in claim order. Stays small however long the history grows.
CREATE INDEX sessions_ready_idx ON sessions (priority DESC, created_at, id) WHERE status = 'queued';
-- Running sessions per runner (the database's max-concurrency check) and lease expiry (the reaper).
CREATE INDEX sessions_running_idx ON sessions (claimed_by) WHERE status = 'running';
CREATE INDEX sessions_lease_idx ON sessions (lease_expires_at) WHERE status = 'running';
-- Listing newest first (ids are time-ordered UUIDv7), by status and by type; the primary key serves the rest.
CREATE INDEX sessions_status_list_idx ON sessions (status, id);
CREATE INDEX sessions_type_list_idx ON sessions (type, id);
CREATE INDEX sessions_runner_list_idx ON sessions (claimed_by, id);

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

-- Claim up to p_slots sessions for one runner: highest priority first, FIFO within a priority, only ready
-- rows of the runner's types. The runner's own lock serializes its claims so the count of its running
-- sessions is exact: the database, not only the runner, keeps it at or under its max concurrency.
-- Each claim is also a poll, so it refreshes the runner's last_heartbeat.
CREATE FUNCTION sfw_claim(p_runner text, p_types text[], p_slots integer, p_max integer, p_lease_ms integer,
                          p_hostname text, p_version text, p_started_at timestamptz)
RETURNS SETOF sessions LANGUAGE plpgsql AS $$
DECLARE
  v_max integer;
  v_free integer;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('sfw.claim:' || p_runner, 0));

  INSERT INTO runner_health AS r (runner_id, max_concurrency, hostname, version, started_at, last_heartbeat)
  VALUES (p_runner, coalesce(p_max, (SELECT max_concurrency FROM scheduler_config)), p_hostname, p_version,
          coalesce(p_started_at, now()), now())
  ON CONFLICT (runner_id) DO UPDATE SET
    last_heartbeat = now(),
    max_concurrency = coalesce(p_max, r.max_concurrency),
    status = CASE WHEN r.status = 'stopped' THEN 'running' ELSE r.status END,
    hostname = coalesce(p_hostname, r.hostname),
    version = coalesce(p_version, r.version),
    started_at = coalesce(p_started_at, r.started_at),
    uptime_seconds = greatest(0, extract(epoch FROM now() - coalesce(p_started_at, r.started_at)))::bigint
  RETURNING r.max_concurrency INTO v_max;

  IF p_slots <= 0 THEN RETURN; END IF;
  SELECT least(p_slots, v_max - count(*))::integer INTO v_free
    FROM sessions WHERE status = 'running' AND claimed_by = p_runner;
  IF v_free <= 0 THEN RETURN; END IF;

  RETURN QUERY
  WITH picked AS (
    SELECT id FROM sessions
    WHERE status = 'queued' AND run_at <= now() AND type = ANY (p_types)
    ORDER BY priority DESC, created_at, id
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
  RETURNING s.*;
END
$$;
