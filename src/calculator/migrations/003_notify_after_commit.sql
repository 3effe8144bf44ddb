-- The relays are no longer woken by a trigger inside the write transaction: a transaction that
-- notifies takes PostgreSQL's notify lock at COMMIT, one lock for the whole server held through the
-- WAL flush, so the trigger made the commits of every calculator wait for each other. The
-- calculator now sends the NOTIFY on the same channel after its commit, in a statement of its own
-- (src/outbox/outbox-notifier.ts). While calculators of an older release still run beside the
-- migrated ones, their commits wake no relay: the relays' polling finds those events.
DROP TRIGGER IF EXISTS outbox_notify ON calculator.outbox;
DROP FUNCTION IF EXISTS calculator.notify_outbox();
