import type { Logger } from '../logger.ts';
import type { Pool, PoolClient } from './pool.ts';

/**
 * Keeps a table partitioned by period ("generation") bounded: partitions are made ahead, the writes
 * move on to the next one when a period ends, a period no longer written to is checkpointed (its
 * rows, the sum of their amounts, the latest accepted_at), and a partition whose period ended more
 * than the window ago is dropped whole. No DELETE, no dead rows to vacuum.
 *
 * The catalogue of generations is `<schema>.partitions` (see the calculator's migration 005 for the
 * table, and for why writers read the current generation from it instead of routing by time).
 * Writers put each row into the current generation: `currentGenerationSql(table)`.
 *
 * Any number of instances may run a keeper: each step runs under an advisory lock, so one does it.
 */

export interface PeriodPartitionsOptions {
  /** The schema of the table and of its `partitions` catalogue, e.g. "calculator". */
  schema: string;
  /** The partitioned table, e.g. "requests"; its partitions are `<table>_g<generation>`. */
  table: string;
  /** Rows are kept at least this long after their period ended. */
  windowSeconds: number;
  /** How long one partition is written to. */
  periodSeconds: number;
  /** What the checkpoint sums: a numeric expression over the table's columns. */
  amountColumn: string;
  /** Partitions kept made ahead of the current one (default 2). */
  ahead?: number;
  /**
   * Called in the transaction that retires a generation, before its rows are dropped; whoever must
   * act on the checkpoint first (the totals' dedup horizon) does it here.
   */
  onRetire?: (client: PoolClient, generation: Generation) => Promise<void>;
  /**
   * How long the switch to the next generation may wait for writes in flight (default 2 s). New
   * writes wait behind it meanwhile, so it is short; a switch that times out is tried again.
   */
  switchLockTimeoutMs?: number;
}

/** One row of the catalogue. */
export interface Generation {
  generation: number;
  startedAt: Date | null;
  endedAt: Date | null;
  closedAt: Date | null;
  rowCount: bigint | null;
  amount: string | null;
  maxAcceptedAt: Date | null;
  retiredAt: Date | null;
  droppedAt: Date | null;
}

/** What a keeper saw at its last step, for the metrics. */
export interface RetentionSnapshot {
  /** Rows in the partitions still there (exact for closed ones, PostgreSQL's live-row count for the others). */
  rows: number;
  bytes: number;
  /** Since the oldest partition still there started taking rows, by the database's clock; 0 when none. */
  oldestRowAgeSeconds: number;
  /** Partitions made and not yet written to. */
  partitionsAhead: number;
  /** Partitions still there, the current one included. */
  partitionsRetained: number;
  /** Partitions whose period ended more than the window ago and are still there: dropping is behind. */
  partitionsOverdue: number;
  /** Rows dropped with their partitions, ever. */
  rowsDropped: number;
  /** The generation written to now. */
  currentGeneration: number;
}

/** The current generation of `schema.table`, as an SQL expression for the writers' statements. */
export function currentGenerationSql(schema: string, table: string): string {
  return `(SELECT generation FROM ${schema}.partitions WHERE table_name = '${table}' AND started_at IS NOT NULL AND ended_at IS NULL)`;
}

export class PeriodPartitions {
  private readonly ahead: number;
  private readonly qualified: string;
  private readonly catalogue: string;
  private readonly lockKey: string;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private last: RetentionSnapshot | undefined;
  /** Whether the last step held the lock (and so did the maintenance itself). */
  private heldLock = false;

  constructor(
    private readonly pool: Pool,
    private readonly options: PeriodPartitionsOptions,
    private readonly logger: Logger,
  ) {
    if (!/^[a-z_][a-z0-9_]*$/.test(options.schema) || !/^[a-z_][a-z0-9_]*$/.test(options.table)) {
      throw new Error(`not a plain identifier: ${options.schema}.${options.table}`);
    }
    if (options.periodSeconds > options.windowSeconds) {
      throw new Error(`the period (${options.periodSeconds} s) of ${options.schema}.${options.table} must not be longer than its window (${options.windowSeconds} s)`);
    }
    this.ahead = options.ahead ?? 2;
    this.qualified = `${options.schema}.${options.table}`;
    this.catalogue = `${options.schema}.partitions`;
    this.lockKey = `summa:partitions:${this.qualified}`;
  }

  /** The step interval: a quarter of a period, between 100 ms and a minute. */
  get intervalMs(): number {
    return Math.min(60_000, Math.max(100, (this.options.periodSeconds * 1000) / 4));
  }

  /**
   * When the next step runs: after intervalMs, or within a second when the last step found another
   * instance keeping the table and saw a problem (none ahead, some overdue). It measured while that
   * one worked, so the problem may be gone a moment later, and its gauges (and `summa status`) must
   * not show it for a whole interval.
   */
  private nextStepMs(): number {
    const last = this.last;
    const troubled = last !== undefined && (last.partitionsAhead === 0 || last.partitionsOverdue > 0);
    // A step of its own that failed keeps the interval: its warning is not logged every second.
    return troubled && !this.heldLock ? Math.min(this.intervalMs, 1_000) : this.intervalMs;
  }

  /** Runs a step now and then every intervalMs (sooner while it sees a problem) until stop(). */
  start(): void {
    const loop = async () => {
      if (this.stopped) return;
      this.running = this.step().catch((error: unknown) => {
        this.logger.warn({ err: error, table: this.qualified }, 'keeping the partitions failed; will try again');
      });
      await this.running;
      if (!this.stopped) this.timer = setTimeout(loop, this.nextStepMs());
    };
    void loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** What the last step saw; undefined before the first. */
  snapshot(): RetentionSnapshot | undefined {
    return this.last;
  }

  /**
   * One round: make partitions ahead, switch to the next generation if the period is over,
   * checkpoint the ones no longer written to, drop the ones older than the window, then measure.
   * Does nothing (but measure) while another instance holds the lock.
   */
  async step(): Promise<void> {
    const client = await this.pool.connect();
    let failed: unknown;
    try {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [this.lockKey]);
      this.heldLock = rows[0]!.locked;
      let maintenanceFailed: unknown;
      if (rows[0]!.locked) {
        try {
          await this.makeAhead(client);
          await this.switchIfDue(client);
          await this.checkpoint(client);
          await this.dropExpired(client);
        } catch (error) {
          maintenanceFailed = error;
        } finally {
          await client.query('SELECT pg_advisory_unlock(hashtext($1))', [this.lockKey]);
        }
      }
      // Measured whether or not the maintenance went through: a keeper that keeps failing must show
      // the partitions piling up (overdue, none ahead), not the figures of its last good step.
      this.last = await this.measure(client);
      if (maintenanceFailed !== undefined) throw maintenanceFailed;
    } catch (error) {
      failed = error;
      throw error;
    } finally {
      client.release(failed instanceof Error ? failed : undefined);
    }
  }

  private partitionName(generation: number): string {
    return `${this.options.table}_g${generation}`;
  }

  async generations(client: Pool | PoolClient = this.pool): Promise<Generation[]> {
    const { rows } = await client.query<{
      generation: number;
      started_at: Date | null;
      ended_at: Date | null;
      closed_at: Date | null;
      row_count: string | null;
      amount: string | null;
      max_accepted_at: Date | null;
      retired_at: Date | null;
      dropped_at: Date | null;
    }>(
      `SELECT generation, started_at, ended_at, closed_at, row_count::text, amount::text, max_accepted_at, retired_at, dropped_at
       FROM ${this.catalogue} WHERE table_name = $1 ORDER BY generation`,
      [this.options.table],
    );
    return rows.map((row) => ({
      generation: row.generation,
      startedAt: row.started_at,
      endedAt: row.ended_at,
      closedAt: row.closed_at,
      rowCount: row.row_count === null ? null : BigInt(row.row_count),
      amount: row.amount,
      maxAcceptedAt: row.max_accepted_at,
      retiredAt: row.retired_at,
      droppedAt: row.dropped_at,
    }));
  }

  /**
   * Creates the partitions of the next `ahead` generations. Made as a plain table and attached,
   * which locks the parent in SHARE UPDATE EXCLUSIVE mode only: the writes go on meanwhile
   * (CREATE TABLE ... PARTITION OF would lock them out).
   */
  private async makeAhead(client: PoolClient): Promise<void> {
    const all = await this.generations(client);
    const current = all.find((g) => g.startedAt !== null && g.endedAt === null);
    if (!current) throw new Error(`${this.qualified} has no current generation in ${this.catalogue}`);
    const attached = await this.attachedPartitions(client);
    for (let generation = current.generation + 1; generation <= current.generation + this.ahead; generation += 1) {
      const name = this.partitionName(generation);
      if (!attached.has(name)) {
        const qualifiedName = `${this.options.schema}.${name}`;
        await client.query(`CREATE TABLE IF NOT EXISTS ${qualifiedName} (LIKE ${this.qualified} INCLUDING DEFAULTS)`);
        await client.query(`ALTER TABLE ${qualifiedName} DROP CONSTRAINT IF EXISTS ${name}_generation`);
        // Proves the partition's bound, so attaching need not scan (it is empty anyway).
        await client.query(`ALTER TABLE ${qualifiedName} ADD CONSTRAINT ${name}_generation CHECK (generation = ${generation})`);
        await client.query(`ALTER TABLE ${this.qualified} ATTACH PARTITION ${qualifiedName} FOR VALUES IN (${generation})`);
      }
      await client.query(`INSERT INTO ${this.catalogue} (table_name, generation) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [this.options.table, generation]);
    }
  }

  /** Names of the partitions attached now, detached-pending ones included. */
  private async attachedPartitions(client: PoolClient): Promise<Set<string>> {
    const { rows } = await client.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass`,
      [this.qualified],
    );
    return new Set(rows.map((row) => row.name));
  }

  /**
   * Moves the writes to the next generation once the current one has been written to for a period.
   * The SHARE lock on the parent alone (ONLY: autovacuum of a partition does not stand in the way)
   * waits for every write in flight and holds new ones back until the switch commits; a write that
   * waited then reads the new generation, and sees every row of the old one.
   */
  private async switchIfDue(client: PoolClient): Promise<void> {
    await client.query('BEGIN');
    try {
      await client.query(`SET LOCAL lock_timeout = ${Math.round(this.options.switchLockTimeoutMs ?? 2_000)}`);
      const { rows } = await client.query<{ generation: number; due: boolean; next_ready: boolean }>(
        `SELECT c.generation,
                c.started_at <= clock_timestamp() - make_interval(secs => $2::float8) AS due,
                EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid
                        WHERE i.inhparent = $3::regclass AND p.relname = $4 || (c.generation + 1)) AS next_ready
         FROM ${this.catalogue} c WHERE c.table_name = $1 AND c.started_at IS NOT NULL AND c.ended_at IS NULL`,
        [this.options.table, this.options.periodSeconds, this.qualified, `${this.options.table}_g`],
      );
      const current = rows[0];
      if (!current?.due || !current.next_ready) {
        await client.query('ROLLBACK');
        return;
      }
      await client.query(`LOCK TABLE ONLY ${this.qualified} IN SHARE MODE`);
      await client.query(`UPDATE ${this.catalogue} SET ended_at = clock_timestamp() WHERE table_name = $1 AND generation = $2`, [this.options.table, current.generation]);
      await client.query(`UPDATE ${this.catalogue} SET started_at = clock_timestamp() WHERE table_name = $1 AND generation = $2`, [
        this.options.table,
        current.generation + 1,
      ]);
      await client.query('COMMIT');
      this.logger.info({ table: this.qualified, generation: current.generation + 1 }, 'writes moved to the next partition');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }

  /**
   * Takes the checkpoint of every generation no longer written to: once the switch committed, no
   * write can reach it any more, so the figures are final.
   */
  private async checkpoint(client: PoolClient): Promise<void> {
    const open = (await this.generations(client)).filter((g) => g.endedAt !== null && g.closedAt === null && g.droppedAt === null);
    for (const { generation } of open) {
      await client.query(
        `UPDATE ${this.catalogue} c SET closed_at = now(), row_count = s.row_count, amount = s.amount, max_accepted_at = s.max_accepted_at
         FROM (SELECT count(*) AS row_count, coalesce(sum(${this.options.amountColumn}), 0) AS amount, max(accepted_at) AS max_accepted_at
               FROM ${this.options.schema}.${this.partitionName(generation)}) s
         WHERE c.table_name = $1 AND c.generation = $2`,
        [this.options.table, generation],
      );
    }
  }

  /**
   * Drops the partitions whose period ended more than the window ago. Retired first (onRetire, in
   * that transaction), then detached CONCURRENTLY, which waits for every transaction that may still
   * read the partition but does not hold the writes back, then dropped.
   */
  private async dropExpired(client: PoolClient): Promise<void> {
    const { rows } = await client.query<{ generation: number }>(
      `SELECT generation FROM ${this.catalogue}
       WHERE table_name = $1 AND closed_at IS NOT NULL AND dropped_at IS NULL AND ended_at < now() - make_interval(secs => $2::float8)
       ORDER BY generation`,
      [this.options.table, this.options.windowSeconds],
    );
    for (const { generation } of rows) {
      const all = await this.generations(client);
      const entry = all.find((g) => g.generation === generation)!;
      if (entry.retiredAt === null) {
        await client.query('BEGIN');
        try {
          await this.options.onRetire?.(client, entry);
          await client.query(`UPDATE ${this.catalogue} SET retired_at = now() WHERE table_name = $1 AND generation = $2`, [this.options.table, generation]);
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK').catch(() => {});
          throw error;
        }
      }
      const name = this.partitionName(generation);
      const qualifiedName = `${this.options.schema}.${name}`;
      const { rows: state } = await client.query<{ pending: boolean }>(
        `SELECT i.inhdetachpending AS pending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = $1::regclass AND c.relname = $2`,
        [this.qualified, name],
      );
      if (state[0]) {
        // A detach cut short (this process died in it) is finished rather than started again.
        await client.query(`ALTER TABLE ${this.qualified} DETACH PARTITION ${qualifiedName} ${state[0].pending ? 'FINALIZE' : 'CONCURRENTLY'}`);
      }
      await client.query(`DROP TABLE IF EXISTS ${qualifiedName}`);
      await client.query(`UPDATE ${this.catalogue} SET dropped_at = now() WHERE table_name = $1 AND generation = $2`, [this.options.table, generation]);
      this.logger.info({ table: this.qualified, generation, rows: entry.rowCount?.toString() }, 'dropped a partition older than the window');
    }
  }

  private async measure(client: PoolClient): Promise<RetentionSnapshot> {
    const { rows } = await client.query<{
      rows: string;
      bytes: string;
      oldest_age: number | null;
      ahead: string;
      retained: string;
      overdue: string;
      dropped: string;
      current: number | null;
    }>(
      `WITH g AS (SELECT * FROM ${this.catalogue} WHERE table_name = $1),
       live AS (
         SELECT c.relname, pg_total_relation_size(c.oid) AS bytes, coalesce(s.n_live_tup, 0) AS live_rows
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
         WHERE i.inhparent = $2::regclass
       )
       SELECT (SELECT coalesce(sum(coalesce(g.row_count, live.live_rows)), 0) FROM live LEFT JOIN g ON live.relname = $3 || g.generation)::text AS rows,
              (SELECT coalesce(sum(bytes), 0) FROM live)::text AS bytes,
              (SELECT extract(epoch FROM now() - min(started_at))::float8 FROM g WHERE dropped_at IS NULL AND started_at IS NOT NULL) AS oldest_age,
              (SELECT count(*) FROM g WHERE started_at IS NULL)::text AS ahead,
              (SELECT count(*) FROM g WHERE started_at IS NOT NULL AND dropped_at IS NULL)::text AS retained,
              (SELECT count(*) FROM g WHERE dropped_at IS NULL AND ended_at < now() - make_interval(secs => $4::float8))::text AS overdue,
              (SELECT coalesce(sum(row_count), 0) FROM g WHERE dropped_at IS NOT NULL)::text AS dropped,
              (SELECT generation FROM g WHERE started_at IS NOT NULL AND ended_at IS NULL) AS current`,
      [this.options.table, this.qualified, `${this.options.table}_g`, this.options.windowSeconds + this.options.periodSeconds],
    );
    const row = rows[0]!;
    return {
      rows: Number(row.rows),
      bytes: Number(row.bytes),
      oldestRowAgeSeconds: Math.max(0, row.oldest_age ?? 0),
      partitionsAhead: Number(row.ahead),
      partitionsRetained: Number(row.retained),
      partitionsOverdue: Number(row.overdue),
      rowsDropped: Number(row.dropped),
      currentGeneration: row.current ?? -1,
    };
  }
}
