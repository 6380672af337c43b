-- The ready pick must walk sessions_ready_idx in claim order whatever the planner statistics say. With
-- statistics taken while many sessions were scheduled for later (run_at in the future) and then became due
-- together, the planner estimated ~1 ready row and chose to read every queued row and sort them: 14 ms per
-- claim at 20,000 queued instead of 0.14 ms. With sorting off for the exchange (as bitmap scans already
-- are), the ordered index scan is the only plan left that is not penalised; statements that must sort still
-- do.
ALTER FUNCTION sfw_exchange(text, jsonb, text[], integer, integer, integer, text, text, timestamptz)
  SET enable_sort = off;
