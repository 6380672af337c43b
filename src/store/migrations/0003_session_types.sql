-- Session types as runners register them: each runner's types with their input schemas (JSON Schema) and
-- defaults, so any API replica checks a session's input and fills in its defaults at enqueue. One row per
-- (type, runner). A type's schema and defaults are those of one registration: the newest schema among live
-- runners, else the newest one (the rule is in src/store/types.ts); rows of runners gone from
-- runner_health are pruned except the newest of each type, whose schema stays in force.
CREATE TABLE session_types (
  type          text NOT NULL,
  runner_id     text NOT NULL,
  -- NULL: the runner could not express the schema as JSON Schema (or has none); `note` says why.
  schema        jsonb,
  schema_hash   text,
  note          text,
  -- The type's defaults (defineSession's timeoutMs, maxAttempts) for a session enqueued without them,
  -- taken from the same registration as the schema; NULL: the API's own (60 s, 1 attempt).
  timeout_ms    integer CHECK (timeout_ms BETWEEN 100 AND 86400000),
  max_attempts  integer CHECK (max_attempts BETWEEN 1 AND 100),
  -- When this runner last registered it.
  registered_at timestamptz NOT NULL DEFAULT now(),
  -- When this schema was first registered for this type by any runner: a restarted runner of an older
  -- version does not make its schema the newest again.
  schema_since  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (type, runner_id),
  CHECK ((schema IS NULL) = (schema_hash IS NULL))
);

CREATE INDEX session_types_runner_idx ON session_types (runner_id);
-- Compiled validators are cached by hash; a replica that misses one reads its schema by hash.
CREATE INDEX session_types_hash_idx ON session_types (schema_hash) WHERE schema_hash IS NOT NULL;
