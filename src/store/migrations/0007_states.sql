-- Named session states: a browser context's Playwright storage state (cookies, local storage) kept under a
-- name, one row per saved version (src/store/states.ts keeps the last few of each name).
--
-- `data` is the storage state JSON, AES-256-GCM encrypted by the API when STATE_ENCRYPTION_KEY is set
-- (nonce ‖ ciphertext ‖ tag, a random nonce per version; `key_id` tells which key), else as it is.
-- `size` is the length of the JSON. A version whose `expires_at` has passed is never read and is deleted at
-- the next save of any state.

CREATE TABLE session_states (
  name             text NOT NULL,
  version          integer NOT NULL,
  data             bytea NOT NULL,
  size             integer NOT NULL,
  encrypted        boolean NOT NULL,
  key_id           text,
  saved_by_session uuid,
  saved_at         timestamptz NOT NULL DEFAULT now(),
  expires_at       timestamptz,
  PRIMARY KEY (name, version)
);

CREATE INDEX session_states_expires_idx ON session_states (expires_at) WHERE expires_at IS NOT NULL;

-- What became of a session's state.save: {name, saved, version, message?}, written under its lease.
ALTER TABLE sessions ADD COLUMN state_saved jsonb;
