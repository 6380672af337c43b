-- Webhooks: signed notifications of sessions reaching a final status, delivered at least once.
--
-- `webhooks` are the endpoints and the events each wants. `webhook_deliveries` is an outbox: a trigger on
-- `sessions` writes one row per matching enabled webhook in the same transaction that makes a session final,
-- whichever path does it (completion, exchange, reaper, cancel, hand-back), so an outcome is never committed
-- without its deliveries. Every API replica sends them (src/server/webhooks.ts): it claims due rows with
-- FOR UPDATE SKIP LOCKED under a lease (next_attempt_at pushed past the send's deadline, a fresh
-- lease_token), so a replica that dies mid-send leaves a row that comes due again, and its late result
-- cannot overwrite a newer attempt's.

CREATE TABLE webhooks (
  id         uuid PRIMARY KEY,
  url        text NOT NULL,
  events     text[] NOT NULL,
  secret     text NOT NULL,
  enabled    boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- A UUIDv7 (time-ordered: deliveries list newest first by id, as sessions do), from gen_random_uuid (core
-- since PostgreSQL 13) with the millisecond clock in its first 48 bits and the version set to 7.
CREATE FUNCTION sfw_delivery_id() RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
    FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;

-- No foreign keys: a key check would lock the webhook's row (KEY SHARE) from every completing transaction.
-- Deleting a webhook deletes its deliveries in the same statement; the sender reads only deliveries whose
-- webhook exists.
CREATE TABLE webhook_deliveries (
  id               uuid PRIMARY KEY DEFAULT sfw_delivery_id(), -- the webhook-id header, the same on every try
  webhook_id       uuid NOT NULL,
  session_id       uuid NOT NULL,
  event            text NOT NULL,
  body             text,            -- the JSON sent, rendered at the first try and kept for the others
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  last_status_code integer,
  last_error       text,
  lease_token      uuid,            -- the try in flight (or the last one); a result is recorded only under it
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_attempt_at  timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  expires_at       timestamptz      -- set at the first try: created_at + WEBHOOK_RETRY_MS
);
-- The sender's due query: pending rows in next_attempt_at order; finished rows add no entry.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_session_idx ON webhook_deliveries (session_id);

-- One delivery per (session reaching a final status, enabled webhook wanting its event). Completions are
-- the hot path: with no enabled webhook the statement costs one probe of an empty or tiny table.
CREATE FUNCTION sfw_webhooks_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM webhooks WHERE enabled LIMIT 1;
  IF NOT FOUND THEN RETURN NULL; END IF;
  INSERT INTO webhook_deliveries (webhook_id, session_id, event)
  SELECT w.id, n.id, 'session.' || n.status
  FROM new_rows n
  JOIN old_rows o ON o.id = n.id
  JOIN webhooks w ON w.enabled AND w.events && ARRAY['session.' || n.status, 'session.finished']
  WHERE n.status IN ('succeeded', 'failed', 'error', 'cancelled')
    AND o.status NOT IN ('succeeded', 'failed', 'error', 'cancelled')
  ORDER BY n.id, w.id;
  IF FOUND THEN PERFORM pg_notify('sfw_webhooks', ''); END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER sessions_webhooks_update AFTER UPDATE ON sessions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sfw_webhooks_after_update();
