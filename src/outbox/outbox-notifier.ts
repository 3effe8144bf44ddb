import { OUTBOX_CHANNEL } from '../calculator/schema.ts';
import type { Pool } from '../platform/db/pool.ts';
import type { Logger } from '../platform/logger.ts';
import { preparedStatement, withValues } from '../platform/db/prepared-statement.ts';

const NOTIFY = preparedStatement('summa_outbox_notify', `SELECT pg_notify($1, '')`);

/**
 * Wakes the relays after outbox rows committed: a NOTIFY on OUTBOX_CHANNEL, sent in a statement of
 * its own once the write transaction is over, never inside it. A transaction that notifies takes
 * PostgreSQL's notify lock at COMMIT (one lock for the whole server, held through the WAL flush), so
 * a NOTIFY inside the write would make the commits of every calculator wait for each other. Out here
 * only this wake-up waits, and no answer to a client does; and a transaction that only notifies
 * wrote nothing before its commit record, so its commit does not wait for a WAL flush and holds the
 * lock for a moment only.
 *
 * At most one NOTIFY is in flight: commits that happen meanwhile are folded into one more after it.
 * A relay claims everything committed by then, so nothing is missed by folding. A NOTIFY is only a
 * latency hint: one that fails is logged at debug level, and the relays' polling finds the rows.
 */
export class OutboxNotifier {
  private inFlight: Promise<void> | undefined;
  /** Rows committed after the NOTIFY in flight was sent: they need one more. */
  private again = false;

  constructor(
    private readonly pool: Pick<Pool, 'query'>,
    private readonly logger: Logger,
    private readonly channel: string = OUTBOX_CHANNEL,
  ) {}

  /** Call once outbox rows committed; returns at once. */
  committed(): void {
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.again = false;
    // Cleared and checked in one step, so a commit that comes just as a NOTIFY ends is not lost.
    this.inFlight = this.send().then(() => {
      this.inFlight = undefined;
      if (this.again) this.committed();
    });
  }

  /** Resolves once no NOTIFY is in flight (the last one sent or failed). */
  async drain(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  private async send(): Promise<void> {
    try {
      await this.pool.query(withValues(NOTIFY, [this.channel]));
    } catch (error) {
      this.logger.debug({ err: error }, 'waking the outbox relays failed; they find the events by polling');
    }
  }
}
