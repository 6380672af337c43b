-- Named states and per-key limits.
--
-- sessions.state_options: the session's named-state options ({use?, save?, overwrite?}); NULL when it has none.
-- sessions.concurrency_key: the key the session's per-key limits count it under; NULL: no key.
ALTER TABLE sessions
  ADD COLUMN state_options jsonb,
  ADD COLUMN concurrency_key text;

-- Per-key limits, for every runner at once: at most `concurrency` sessions of the key running, at most
-- `per_minute` claimed in any window of sfw_limit_window(). A claim admits a limited key's sessions only
-- while it holds the key's row lock (taken without waiting: a claim that finds it taken leaves the key's
-- sessions to the holder and claims other work), so two claims never both see room for one more.
CREATE TABLE limits (
  key         text PRIMARY KEY,
  concurrency integer CHECK (concurrency >= 1),
  per_minute  integer CHECK (per_minute >= 1),
  -- When each of the key's claims within the last window was made, oldest first (at most per_minute).
  recent      timestamptz[] NOT NULL DEFAULT '{}',
  -- When a claim next looks at the key's held sessions (NULL: none held).
  release_at  timestamptz,
  -- The site said to come back later (HTTP 429 or 503 with Retry-After on a navigation): no session of
  -- the key is claimed before this time. A key may have a row for this alone (no bounds), dropped once
  -- the time has passed and nothing waits.
  backoff_until timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CHECK (concurrency IS NOT NULL OR per_minute IS NOT NULL OR backoff_until IS NOT NULL)
);
CREATE INDEX limits_release_idx ON limits (release_at) WHERE release_at IS NOT NULL;

-- The rolling window of per_minute (a function, so a test can shorten it).
CREATE FUNCTION sfw_limit_window() RETURNS interval LANGUAGE sql STABLE AS $$ SELECT interval '60 seconds' $$;

-- The hot set carries the key, so a claim decides without reading the history.
ALTER TABLE session_ready ADD COLUMN concurrency_key text;
ALTER TABLE session_scheduled ADD COLUMN concurrency_key text;
ALTER TABLE session_running ADD COLUMN concurrency_key text;
CREATE INDEX session_ready_key_idx ON session_ready (concurrency_key, priority DESC, created_at, id)
  WHERE concurrency_key IS NOT NULL;
CREATE INDEX session_running_key_idx ON session_running (concurrency_key) WHERE concurrency_key IS NOT NULL;

-- Queued, due sessions of a key that is full ("parked"): out of session_ready, so a claim never reads them
-- again while the key has no room (no head-of-line blocking, and a claim's cost does not grow with them).
-- They go back to session_ready a few at a time: when a session of the key stops running (the queue
-- trigger, whatever the path: completion, retry, reaper, cancel, hand-back), when the key's release_at
-- comes (the window moved on, or a look again in case a slot freed while they were being parked), when
-- the limit is changed or deleted.
CREATE TABLE session_held (
  id              uuid PRIMARY KEY,
  type            text NOT NULL,
  priority        integer NOT NULL,
  created_at      timestamptz NOT NULL,
  run_at          timestamptz NOT NULL,
  concurrency_key text NOT NULL
);
CREATE INDEX session_held_key_idx ON session_held (concurrency_key, priority DESC, created_at, id);

-- Moves up to p_n of a key's held sessions back to the ready table, claim order first. Answers how many.
CREATE FUNCTION sfw_release_held(p_key text, p_n integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_ids uuid[];
  v_n integer;
BEGIN
  IF p_n IS NULL OR p_n <= 0 THEN RETURN 0; END IF;
  SELECT array_agg(h.id) INTO v_ids FROM (
    SELECT h.id FROM session_held h WHERE h.concurrency_key = p_key
    ORDER BY h.priority DESC, h.created_at, h.id LIMIT p_n FOR UPDATE SKIP LOCKED
  ) h;
  IF v_ids IS NULL THEN RETURN 0; END IF;
  WITH moved AS (
    DELETE FROM session_held WHERE id = ANY (v_ids) RETURNING id, type, priority, created_at, run_at, concurrency_key
  )
  INSERT INTO session_ready (id, type, priority, created_at, run_at, concurrency_key)
  SELECT id, type, priority, created_at, run_at, concurrency_key FROM moved ON CONFLICT (id) DO NOTHING;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  IF v_n > 0 THEN PERFORM pg_notify('sfw_sessions', ''); END IF;
  RETURN v_n;
END
$$;

-- Every held session of a key back to the ready table (its limit was deleted). Waits for rows another
-- release has locked, so none is left behind.
CREATE FUNCTION sfw_release_all(p_key text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_n integer;
BEGIN
  WITH moved AS (
    DELETE FROM session_held WHERE concurrency_key = p_key RETURNING id, type, priority, created_at, run_at, concurrency_key
  )
  INSERT INTO session_ready (id, type, priority, created_at, run_at, concurrency_key)
  SELECT id, type, priority, created_at, run_at, concurrency_key FROM moved ON CONFLICT (id) DO NOTHING;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  IF v_n > 0 THEN PERFORM pg_notify('sfw_sessions', ''); END IF;
  RETURN v_n;
END
$$;

-- A site said to come back later: a running session's navigation got HTTP 429 or 503 with Retry-After.
-- Fenced by the session's lease like every runner write; the session's key (none: nothing to do) claims
-- nothing until then (the later time wins when two say so). Answers the key's backoff time, NULL when the
-- lease is not held or the session has no key.
CREATE FUNCTION sfw_back_off(p_session uuid, p_runner text, p_lease uuid, p_until timestamptz)
RETURNS TABLE (key text, backoff_until timestamptz) LANGUAGE sql AS $$
  INSERT INTO limits AS l (key, backoff_until, release_at)
  SELECT s.concurrency_key, p_until, p_until FROM sessions s
  WHERE s.id = p_session AND s.lease_token = p_lease AND s.claimed_by = p_runner AND s.status = 'running'
    AND s.concurrency_key IS NOT NULL
  ON CONFLICT (key) DO UPDATE SET
    backoff_until = greatest(l.backoff_until, excluded.backoff_until),
    release_at = CASE WHEN l.release_at IS NULL THEN NULL
                      ELSE greatest(l.release_at, excluded.backoff_until) END,
    updated_at = now()
  RETURNING l.key, l.backoff_until
$$;

-- A limit's room now: how many more of its sessions may be claimed (none while it backs off). p_recent is
-- the window's claims (this claim's own included), p_extra the key's sessions this claim has taken and not
-- yet marked running.
CREATE FUNCTION sfw_limit_room(p_key text, p_concurrency integer, p_per_minute integer, p_recent timestamptz[],
                               p_extra integer, p_backoff_until timestamptz)
RETURNS integer LANGUAGE sql VOLATILE AS $$
  SELECT CASE WHEN p_backoff_until > clock_timestamp() THEN 0 ELSE greatest(0, coalesce(least(
    p_concurrency - p_extra - (SELECT count(*) FROM session_running r WHERE r.concurrency_key = p_key)::integer,
    p_per_minute - cardinality(p_recent)), 2147483647)) END
$$;

-- When a key with held sessions is next looked at: once its window moves on if per_minute is what is full,
-- else in a second (its slots free through the queue trigger; this catches one that freed while the
-- sessions were being parked).
CREATE FUNCTION sfw_limit_next_look(p_per_minute integer, p_recent timestamptz[], p_at timestamptz,
                                    p_backoff_until timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN p_backoff_until > p_at THEN p_backoff_until
              WHEN p_per_minute IS NOT NULL AND cardinality(p_recent) >= p_per_minute
              THEN greatest(p_recent[cardinality(p_recent) - p_per_minute + 1] + sfw_limit_window(), p_at + interval '50 milliseconds')
              ELSE p_at + interval '1 second' END
$$;

-- Keys whose release_at has come: each (whose row no claim holds) releases as many held sessions as it
-- has room for, less the ones already back in the ready table, and sets when to look again.
CREATE FUNCTION sfw_release_due() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  l record;
  v_at timestamptz;
  v_recent timestamptz[];
  v_room integer;
  v_n integer := 0;
BEGIN
  FOR l IN SELECT * FROM limits WHERE release_at <= now() ORDER BY key FOR UPDATE SKIP LOCKED LOOP
    v_at := clock_timestamp();
    v_recent := ARRAY(SELECT t FROM unnest(l.recent) t WHERE t > v_at - sfw_limit_window() ORDER BY t);
    v_room := sfw_limit_room(l.key, l.concurrency, l.per_minute, v_recent, 0, l.backoff_until)
              - (SELECT count(*) FROM session_ready q WHERE q.concurrency_key = l.key)::integer;
    v_n := v_n + sfw_release_held(l.key, v_room);
    IF l.concurrency IS NULL AND l.per_minute IS NULL AND NOT l.backoff_until > v_at
       AND NOT EXISTS (SELECT 1 FROM session_held h WHERE h.concurrency_key = l.key) THEN
      -- A row kept only for a backoff that is over.
      DELETE FROM limits WHERE key = l.key;
    ELSE
      UPDATE limits SET recent = v_recent,
        release_at = CASE WHEN EXISTS (SELECT 1 FROM session_held h WHERE h.concurrency_key = l.key)
                          THEN sfw_limit_next_look(l.per_minute, v_recent, v_at, l.backoff_until) END
      WHERE key = l.key;
    END IF;
  END LOOP;
  RETURN v_n;
END
$$;

-- The hot set follows the status (see 0001), now with the key; a held session leaves session_held as it
-- leaves the ready table. A session of a key that stops running frees a slot: as many of the key's held
-- sessions go back to the ready table.
CREATE OR REPLACE FUNCTION sfw_queue_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO session_ready (id, type, priority, created_at, run_at, concurrency_key)
  SELECT id, type, priority, created_at, run_at, concurrency_key FROM new_rows WHERE status = 'queued' AND run_at <= now();
  INSERT INTO session_scheduled (id, type, priority, created_at, run_at, concurrency_key)
  SELECT id, type, priority, created_at, run_at, concurrency_key FROM new_rows WHERE status = 'queued' AND run_at > now();
  INSERT INTO session_running (id, runner_id, type, priority, concurrency_key)
  SELECT id, coalesce(claimed_by, ''), type, priority, concurrency_key FROM new_rows WHERE status = 'running';
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION sfw_queue_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_out uuid[];
  v_unheld uuid[];
  v_stopped uuid[];
  v_keys text[];
  v_freed integer[];
BEGIN
  SELECT array_agg(o.id) INTO v_stopped
  FROM old_rows o JOIN new_rows n ON n.id = o.id
  WHERE o.status = 'running' AND n.status <> 'running';
  IF v_stopped IS NOT NULL THEN
    WITH d AS (DELETE FROM session_running WHERE id = ANY (v_stopped) RETURNING concurrency_key)
    SELECT array_agg(k.concurrency_key ORDER BY k.concurrency_key), array_agg(k.n ORDER BY k.concurrency_key)
    INTO v_keys, v_freed
    FROM (SELECT d.concurrency_key, count(*)::integer AS n FROM d WHERE d.concurrency_key IS NOT NULL GROUP BY 1) k;
  END IF;
  INSERT INTO session_running (id, runner_id, type, priority, concurrency_key)
  SELECT n.id, coalesce(n.claimed_by, ''), n.type, n.priority, n.concurrency_key
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
    -- A claim takes sessions from the ready table only, never held ones: its statement skips this.
    SELECT array_agg(o.id) INTO v_unheld
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE o.status = 'queued' AND o.concurrency_key IS NOT NULL AND n.status <> 'running' AND o.id = ANY (v_out);
    IF v_unheld IS NOT NULL THEN
      DELETE FROM session_held WHERE id = ANY (v_unheld);
    END IF;
  END IF;
  INSERT INTO session_ready (id, type, priority, created_at, run_at, concurrency_key)
  SELECT n.id, n.type, n.priority, n.created_at, n.run_at, n.concurrency_key
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE n.status = 'queued' AND n.run_at <= now()
    AND (o.status <> 'queued' OR n.run_at <> o.run_at OR n.priority <> o.priority OR n.type <> o.type)
  ON CONFLICT (id) DO NOTHING;
  INSERT INTO session_scheduled (id, type, priority, created_at, run_at, concurrency_key)
  SELECT n.id, n.type, n.priority, n.created_at, n.run_at, n.concurrency_key
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE n.status = 'queued' AND n.run_at > now()
    AND (o.status <> 'queued' OR n.run_at <> o.run_at OR n.priority <> o.priority OR n.type <> o.type)
  ON CONFLICT (id) DO NOTHING;

  IF v_keys IS NOT NULL THEN
    PERFORM sfw_release_held(k, n) FROM unnest(v_keys, v_freed) AS f(k, n);
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION sfw_queue_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_out uuid[];
BEGIN
  SELECT array_agg(id) INTO v_out FROM old_rows WHERE status IN ('queued', 'running');
  IF v_out IS NOT NULL THEN
    DELETE FROM session_ready WHERE id = ANY (v_out);
    DELETE FROM session_scheduled WHERE id = ANY (v_out);
    DELETE FROM session_held WHERE id = ANY (v_out);
    DELETE FROM session_running WHERE id = ANY (v_out);
  END IF;
  RETURN NULL;
END
$$;

-- Scheduled sessions whose time has come to the ready table (see 0001), with their key; then the limited
-- keys whose held sessions are due a look.
CREATE OR REPLACE FUNCTION sfw_promote_due(p_limit integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_ids uuid[];
  v_n integer := 0;
BEGIN
  SELECT array_agg(id) INTO v_ids FROM (
    SELECT id FROM session_scheduled WHERE run_at <= now() ORDER BY run_at LIMIT p_limit FOR UPDATE SKIP LOCKED
  ) d;
  IF v_ids IS NOT NULL THEN
    WITH moved AS (
      DELETE FROM session_scheduled WHERE id = ANY (v_ids) RETURNING id, type, priority, created_at, run_at, concurrency_key
    )
    INSERT INTO session_ready (id, type, priority, created_at, run_at, concurrency_key)
    SELECT id, type, priority, created_at, run_at, concurrency_key FROM moved ON CONFLICT (id) DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
  END IF;
  IF EXISTS (SELECT 1 FROM limits WHERE release_at <= now()) THEN
    v_n := v_n + sfw_release_due();
  END IF;
  RETURN v_n;
END
$$;

-- The claim (see 0002), under per-key limits. Candidates are read as before; a candidate without a key, or
-- whose key has no limit, is taken as before (no lock, no extra read). For a limited key the claim takes
-- the key's row lock without waiting (a key another claim holds is left to it), counts the key's room
-- (running sessions, claims within the window), takes that many of its candidates in claim order, and when
-- the key is full parks the rest of its ready sessions (session_held, at most 5000 a round) and sets when
-- to look at them again. Then it reads more candidates in place of the ones it did not take, at most four
-- rounds, so a full key never holds up other work. The claim time of a limited key's session is the clock
-- under the lock, recorded in the key's window. It also carries the session's state options (null when
-- it has none).
CREATE OR REPLACE FUNCTION sfw_claim_many(p_runners text[], p_counts integer[], p_types text[], p_lease_ms integer)
RETURNS TABLE (runner_id text, claimed json) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_total integer;
  v_ids uuid[] := '{}';
  v_keys text[] := '{}';
  v_at timestamptz[] := '{}';
  v_seen uuid[] := '{}';
  v_busy text[] := '{}';
  v_need integer;
  v_cids uuid[];
  v_ckeys text[];
  v_to text[];
  v_round integer := 0;
  v_key text;
  l record;
  v_now timestamptz;
  v_recent timestamptz[];
  v_room integer;
  v_mine uuid[];
  v_take integer;
BEGIN
  SELECT sum(greatest(n, 0)) INTO v_total FROM unnest(p_counts) AS n;
  IF v_total IS NULL OR v_total <= 0 THEN RETURN; END IF;
  PERFORM sfw_promote_due(1000);
  LOOP
    v_round := v_round + 1;
    v_need := v_total - cardinality(v_ids);
    SELECT array_agg(c.id ORDER BY c.priority DESC, c.created_at, c.id),
           array_agg(c.concurrency_key ORDER BY c.priority DESC, c.created_at, c.id)
    INTO v_cids, v_ckeys FROM (
      SELECT r.id, r.priority, r.created_at, r.concurrency_key FROM unnest(p_types) AS t(type)
      CROSS JOIN LATERAL (
        SELECT q.id, q.priority, q.created_at, q.concurrency_key FROM session_ready q
        WHERE q.type = t.type AND NOT (q.id = ANY (v_seen))
          AND (q.concurrency_key IS NULL OR q.concurrency_key <> ALL (v_busy))
        ORDER BY q.priority DESC, q.created_at, q.id
        LIMIT v_need
        FOR UPDATE SKIP LOCKED
      ) r
      ORDER BY r.priority DESC, r.created_at, r.id
      LIMIT v_need
    ) c;
    EXIT WHEN v_cids IS NULL;
    v_seen := v_seen || v_cids;
    IF cardinality(array_remove(v_ckeys, NULL)) = 0 OR NOT EXISTS (SELECT 1 FROM limits x WHERE x.key = ANY (v_ckeys)) THEN
      -- No candidate has a limited key: the claim as it always was.
      v_ids := v_ids || v_cids;
      v_keys := v_keys || v_ckeys;
      v_at := v_at || array_fill(NULL::timestamptz, ARRAY[cardinality(v_cids)]);
      EXIT;
    END IF;
    -- Candidates without a key, or whose key has no limit.
    SELECT v_ids || coalesce(array_agg(c.id ORDER BY c.ord), '{}'), v_keys || coalesce(array_agg(c.k ORDER BY c.ord), '{}'),
           v_at || coalesce(array_agg(NULL::timestamptz ORDER BY c.ord), '{}')
    INTO v_ids, v_keys, v_at
    FROM unnest(v_cids, v_ckeys) WITH ORDINALITY AS c(id, k, ord)
    WHERE c.k IS NULL OR NOT EXISTS (SELECT 1 FROM limits x WHERE x.key = c.k);
    -- Limited keys, one at a time under the key's row lock.
    FOR v_key IN SELECT DISTINCT k FROM unnest(v_ckeys) k JOIN limits x ON x.key = k ORDER BY 1 LOOP
      SELECT * INTO l FROM limits x WHERE x.key = v_key FOR UPDATE SKIP LOCKED;
      IF NOT FOUND THEN
        -- Another claim holds the key: its sessions are left to it, and later rounds read past them.
        v_busy := v_busy || v_key;
        CONTINUE;
      END IF;
      v_recent := ARRAY(SELECT t FROM unnest(l.recent) t WHERE t > clock_timestamp() - sfw_limit_window() ORDER BY t);
      v_room := sfw_limit_room(v_key, l.concurrency, l.per_minute, v_recent,
                               cardinality(array_positions(v_keys, v_key)), l.backoff_until);
      -- The claim time, after the count: later than the end of every session the count saw ended, and than
      -- every claim the window holds.
      v_now := clock_timestamp();
      v_mine := ARRAY(SELECT c.id FROM unnest(v_cids, v_ckeys) WITH ORDINALITY AS c(id, k, ord)
                      WHERE c.k = v_key ORDER BY c.ord);
      v_take := least(coalesce(v_room, cardinality(v_mine)), cardinality(v_mine));
      IF v_take > 0 THEN
        v_ids := v_ids || v_mine[1:v_take];
        v_keys := v_keys || array_fill(v_key, ARRAY[v_take]);
        v_at := v_at || array_fill(v_now, ARRAY[v_take]);
        IF l.per_minute IS NOT NULL THEN
          v_recent := v_recent || array_fill(v_now, ARRAY[v_take]);
        END IF;
      END IF;
      IF v_take < cardinality(v_mine) THEN
        -- Full: the key's ready sessions wait in session_held, head of the queue first (the ones other
        -- claims hold are left to them).
        WITH p AS (
          SELECT q.id FROM session_ready q
          WHERE q.concurrency_key = v_key AND NOT (q.id = ANY (v_ids))
          ORDER BY q.priority DESC, q.created_at, q.id
          LIMIT 5000 FOR UPDATE SKIP LOCKED
        ), moved AS (
          DELETE FROM session_ready q USING p WHERE q.id = p.id
          RETURNING q.id, q.type, q.priority, q.created_at, q.run_at, q.concurrency_key
        )
        INSERT INTO session_held (id, type, priority, created_at, run_at, concurrency_key)
        SELECT id, type, priority, created_at, run_at, concurrency_key FROM moved ON CONFLICT (id) DO NOTHING;
        -- Parked ones of this claim's candidates (locked by it, so in p) are gone from the ready table.
        UPDATE limits x SET recent = v_recent,
          release_at = sfw_limit_next_look(l.per_minute, v_recent, v_now, l.backoff_until)
        WHERE x.key = v_key;
      ELSIF l.per_minute IS NOT NULL THEN
        UPDATE limits x SET recent = v_recent WHERE x.key = v_key;
      END IF;
    END LOOP;
    -- Done when the slots are filled, when the index had no more to give, or after four rounds.
    EXIT WHEN cardinality(v_ids) >= v_total OR cardinality(v_cids) < v_need OR v_round >= 4;
  END LOOP;
  IF cardinality(v_ids) = 0 THEN RETURN; END IF;
  -- The runner of each picked session, position by position.
  SELECT array_agg(u.runner ORDER BY u.ord, k) INTO v_to
  FROM unnest(p_runners, p_counts) WITH ORDINALITY AS u(runner, n, ord), generate_series(1, greatest(u.n, 0)) AS k;
  RETURN QUERY
  WITH c AS (
    UPDATE sessions s SET
      status = 'running',
      claimed_by = v_to[array_position(v_ids, s.id)],
      claimed_at = coalesce(v_at[array_position(v_ids, s.id)], now()),
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

-- Claims for waiting runners (see 0001); the next time to look again is also the earliest release_at of a
-- key with held sessions.
CREATE OR REPLACE FUNCTION sfw_claim_waiting(p_waiters jsonb, p_lease_ms integer)
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
  SELECT least((SELECT min(run_at) FROM session_scheduled),
               (SELECT min(l.release_at) FROM limits l WHERE l.release_at IS NOT NULL)) INTO next_run_at;
  RETURN NEXT;
END
$$;
