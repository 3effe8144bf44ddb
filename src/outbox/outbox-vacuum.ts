import type { Pool } from '../platform/db/pool.ts';
import type { Logger } from '../platform/logger.ts';
import { OUTBOX_TABLE } from '../calculator/schema.ts';

export interface OutboxVacuumOptions {
  /** Rows this relay deleted since its last vacuum that call for the next one; 0: never (autovacuum only). */
  everyRows: number;
  /** The least time between two vacuums of this relay, however fast it deletes. */
  minIntervalMs: number;
}

/**
 * Whether to vacuum now: enough rows deleted, not too soon after the last vacuum, none running.
 * `sinceLastMs` is undefined before the first.
 */
export function vacuumDue(deletedSince: number, sinceLastMs: number | undefined, running: boolean, options: OutboxVacuumOptions): boolean {
  if (running || options.everyRows <= 0 || deletedSince < options.everyRows) return false;
  return sinceLastMs === undefined || sinceLastMs >= options.minIntervalMs;
}

// SKIP_LOCKED: another relay's vacuum of the table is running; this one is not needed then.
const VACUUM_SQL = `VACUUM (SKIP_LOCKED) ${OUTBOX_TABLE}`;

/**
 * Vacuums the outbox as the relay empties it. Every event is inserted, claimed (updated) and
 * deleted within moments, so the table is mostly dead rows until a vacuum removes them; PostgreSQL's
 * autovacuum looks at a table about once a minute (`autovacuum_naptime`), and until then every
 * claim reads past the dead rows of the whole minute: a claim cost 4–9 ms at 1,400 events/s before
 * the first autovacuum, 0.4–0.6 ms after a vacuum (BENCHMARKS.md, "Planning and the outbox's dead
 * rows"). So each relay vacuums once it has deleted `everyRows` rows, at most every
 * `minIntervalMs`. The vacuum runs beside the claims and deletes (it takes no lock they wait for).
 *
 * A role that may not vacuum the table gets a warning from PostgreSQL, not an error, and the table
 * is left to autovacuum; a failed vacuum is logged and tried again after the next `everyRows`.
 */
export class OutboxVacuum {
  private deletedSince = 0;
  private lastAt: number | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly pool: Pick<Pool, 'query'>,
    private readonly options: OutboxVacuumOptions,
    private readonly logger: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Call after rows were deleted; starts a vacuum when one is due and returns at once. */
  deleted(rows: number): void {
    this.deletedSince += rows;
    const sinceLastMs = this.lastAt === undefined ? undefined : this.now() - this.lastAt;
    if (!vacuumDue(this.deletedSince, sinceLastMs, this.running !== undefined, this.options)) return;
    this.deletedSince = 0;
    this.lastAt = this.now();
    this.running = this.pool
      .query(VACUUM_SQL)
      .then(
        () => undefined,
        (error: unknown) => this.logger.warn({ err: error }, 'vacuuming the outbox failed; autovacuum remains, and the next vacuum is tried later'),
      )
      .finally(() => {
        this.running = undefined;
      });
  }

  /** Waits for a vacuum in progress. */
  async drain(): Promise<void> {
    await this.running;
  }
}
