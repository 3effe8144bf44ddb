-- Relays claim outbox rows with a lease instead of holding row locks (and a transaction) across the
-- Kafka publish: a short transaction stamps the rows, the publish runs with no transaction open, and
-- another short transaction deletes them. A relay that dies or hangs leaves its rows to another once
-- the lease runs out.
ALTER TABLE calculator.outbox
  -- Who holds the row: one relay's claim token ("host:pid:nonce#n"), and until when by the
  -- database's clock. After a failure that is the row's own, claimed_until is when it may be tried
  -- again.
  ADD COLUMN claimed_by    text,
  ADD COLUMN claimed_until timestamptz,
  -- Failed publishes that were the row's own fault (its topic does not exist, Kafka refuses the
  -- record), and the last reason. An outage of Kafka counts against no row.
  ADD COLUMN attempts      integer NOT NULL DEFAULT 0,
  ADD COLUMN last_error    text,
  -- Set once attempts reached the relay's limit: no relay claims the row until someone releases it
  -- (docs/reliability.md says how), so it no longer holds up the rows behind it.
  ADD COLUMN parked_at     timestamptz;
