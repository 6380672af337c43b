-- Tags: labels a client gives sessions (up to 20, 1 to 64 characters each, checked by the API) to follow
-- a batch: list it (GET /v1/sessions?tag=), count it by status (GET /v1/tags/:tag), export it, cancel it.
--
-- A column with a constant default is added without rewriting the table (PostgreSQL 11 and later): the
-- upgrade of a large history is instant. The GIN index is partial: untagged sessions, most of the history,
-- are not in it at all, so it costs nothing on their inserts. Queries by tag say `cardinality(tags) > 0`
-- beside `tags @> ARRAY[tag]` so the planner can use it (src/store/batches.ts).
--
-- Chosen over a side table session_tags(tag, session_id) by EXPLAIN ANALYZE on 100,000 sessions (80 % tagged,
-- one tag on 40,000): counts by status of the large tag 49 ms (bitmap scan of its rows only) against 289 ms
-- (the join read every session), a 160-session tag 0.2 ms against 0.7 ms, list pages equal (under 1 ms; a
-- large tag's first page walks the primary key backwards), 256 kB of index against 14 MB, and no second
-- table to keep in step on insert or delete.

ALTER TABLE sessions ADD COLUMN tags text[] NOT NULL DEFAULT '{}';

CREATE INDEX sessions_tags_idx ON sessions USING gin (tags) WHERE cardinality(tags) > 0;
