-- Webhook deliveries are written by a row trigger that fires only when a session becomes final, instead of
-- a statement trigger on every UPDATE of sessions. The statement trigger made Postgres capture old and new
-- transition tables for every claim, renewal and completion statement and ran its function for each; now
-- `UPDATE OF status` leaves the statements that do not set status alone, and the WHEN clause (evaluated
-- without calling the function) passes only the final transitions. What is written is unchanged: one
-- delivery per enabled webhook that wants the event, in the transaction that makes the session final,
-- whichever path does it.

DROP TRIGGER sessions_webhooks_update ON sessions;
DROP FUNCTION sfw_webhooks_after_update();

CREATE FUNCTION sfw_webhooks_after_finish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO webhook_deliveries (webhook_id, session_id, event)
  SELECT w.id, NEW.id, 'session.' || NEW.status
  FROM webhooks w
  WHERE w.enabled AND w.events && ARRAY['session.' || NEW.status, 'session.finished']
  ORDER BY w.id;
  -- Notifications alike in one transaction are sent once.
  IF FOUND THEN PERFORM pg_notify('sfw_webhooks', ''); END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER sessions_webhooks_finish AFTER UPDATE OF status ON sessions
  FOR EACH ROW
  WHEN (NEW.status IN ('succeeded', 'failed', 'error', 'cancelled')
        AND OLD.status NOT IN ('succeeded', 'failed', 'error', 'cancelled'))
  EXECUTE FUNCTION sfw_webhooks_after_finish();
