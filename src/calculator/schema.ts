import { fileURLToPath } from 'node:url';

// The calculator's database schema, named once for whoever needs it: the calculator writes it, the
// outbox relay reads and deletes its outbox, and either may be first to start and migrate it. A leaf
// module: it imports nothing of any service.

export const CALCULATOR_SCHEMA = 'calculator';

/** Numbered plain-SQL migrations of the calculator schema (requests, outbox, its claim columns). */
export const CALCULATOR_MIGRATIONS = fileURLToPath(new URL('./migrations', import.meta.url));

/** The idempotency records: one row per accepted request id. */
export const REQUESTS_TABLE = `${CALCULATOR_SCHEMA}.requests`;

/** Events waiting to be published, written in the same statement as their request row. */
export const OUTBOX_TABLE = `${CALCULATOR_SCHEMA}.outbox`;

/** The NOTIFY channel that wakes the relays, sent by the calculator after its commits (OutboxNotifier). */
export const OUTBOX_CHANNEL = 'summa_outbox';
