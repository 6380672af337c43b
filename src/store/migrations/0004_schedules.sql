-- Schedules: recurring sessions. Every API replica runs the firing loop over the same rows; a due schedule
-- is taken with FOR UPDATE SKIP LOCKED, its sessions are inserted and its next_run_at advanced in one
-- transaction. Exactly one session per fire time rests on the unique key below, not on the lock: two
-- replicas that both believed a time was theirs would insert it once.

CREATE TABLE schedules (
  id           uuid PRIMARY KEY,
  name         text NOT NULL UNIQUE,
  cron         text NOT NULL,
  timezone     text NOT NULL DEFAULT 'UTC',
  enabled      boolean NOT NULL DEFAULT true,
  -- The session each fire enqueues: a POST /v1/sessions body without runAt and idempotencyKey.
  session      jsonb NOT NULL,
  catch_up     text NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('none', 'latest', 'all')),
  overlap      text NOT NULL DEFAULT 'skip' CHECK (overlap IN ('allow', 'skip')),
  -- The next fire time (computed by the API from cron and timezone); NULL while disabled or when the
  -- expression has no further time.
  next_run_at  timestamptz,
  -- The fire time of the last session made.
  last_run_at  timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CHECK (enabled OR next_run_at IS NULL)
);
-- Due schedules, earliest first: the firing loop's scan and its sleep until the next one.
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled AND next_run_at IS NOT NULL;

-- Sessions made by a schedule. No foreign key: deleting a schedule leaves its history as it is (and updates
-- none of its sessions, which a cascade would do outside the running sessions' lock order).
ALTER TABLE sessions ADD COLUMN schedule_id uuid, ADD COLUMN scheduled_for timestamptz;
-- One session per fire time, whatever the number of replicas (ON CONFLICT DO NOTHING on this key); also
-- the schedule's latest session (overlap) and its recent ones.
CREATE UNIQUE INDEX sessions_schedule_fire_idx ON sessions (schedule_id, scheduled_for)
  WHERE schedule_id IS NOT NULL;
-- GET /v1/sessions?scheduleId=: newest first by id, like every list.
CREATE INDEX sessions_schedule_list_idx ON sessions (schedule_id, id) WHERE schedule_id IS NOT NULL;

-- Fleet-wide firing statistics, sharded by backend like session_stats:
--   kind 'lag':     seconds from fire time to the session's creation, by histogram bucket (bounds in
--                   src/store/schedules.ts);
--   kind 'created': sessions made; kind 'skipped': fire times skipped while the schedule's previous session
--                   was not final (overlap skip). Bucket 0, sum 0.
CREATE TABLE schedule_stats (
  kind    text NOT NULL,
  bucket  smallint NOT NULL,
  shard   smallint NOT NULL,
  count   bigint NOT NULL DEFAULT 0,
  sum     double precision NOT NULL DEFAULT 0,
  PRIMARY KEY (kind, bucket, shard)
);
