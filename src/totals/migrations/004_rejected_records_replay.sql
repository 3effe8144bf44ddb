-- A rejected record stays in totals.rejected_records once `summa dlq replay` has applied it, so the
-- history of what was parked and why is kept; replayed_at says it is parked no longer, and
-- replayed_event_id names the event it turned out to carry (in totals.applied_events, whether this
-- replay added it or the consumer had applied it already).
ALTER TABLE totals.rejected_records
  ADD COLUMN replayed_at       timestamptz,
  ADD COLUMN replayed_event_id uuid;

-- What is still parked, newest first: what `summa dlq list` and `replay --all` read.
CREATE INDEX rejected_records_parked ON totals.rejected_records (rejected_at DESC) WHERE replayed_at IS NULL;
