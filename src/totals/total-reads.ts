import { backoffDelay, sleep } from '../platform/backoff.ts';
import { replicaLagOf, readReplicaLag, REPLICA_LAG_COLUMNS, type Queryable, type ReplicaLag, type ReplicaLagRow } from '../platform/db/replication-lag.ts';
import { SummaError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import type { AppliedRequests } from './applied-requests.ts';
import type { TotalQuery } from './total-query.ts';
import type { TotalSnapshot } from './totals-store.ts';

export type ReadSource = 'replica' | 'primary';

/** A total as read for GET /total, and where it was read. */
export interface TotalRead {
  snapshot: TotalSnapshot;
  source: ReadSource;
  /** The replica's lag at the read, when the total was read there. */
  replicaLag: ReplicaLag | undefined;
}

/**
 * The total and, for ?after=, whether one request's sum is in it: one statement, so one snapshot.
 * Read in two, a consumer's commit between them could show the request applied with a total
 * that does not hold it yet.
 */
const TOTAL_SQL = `
SELECT total::text AS total, count::text AS count,
       ($1::text IS NOT NULL AND EXISTS (SELECT 1 FROM totals.applied_events WHERE request_id = $1::text)) AS applied`;
const PRIMARY_TOTAL_SQL = `${TOTAL_SQL} FROM totals.total WHERE id = 1`;
const REPLICA_TOTAL_SQL = `${TOTAL_SQL}, ${REPLICA_LAG_COLUMNS} FROM totals.total WHERE id = 1`;

interface TotalRow extends Partial<ReplicaLagRow> {
  total: string;
  count: string;
  applied: boolean;
}

export interface TotalReaderOptions {
  primary: Queryable;
  /** Where eventual reads go; undefined without a replica. */
  replica: Queryable | undefined;
  logger: Logger;
  /** After a failed replica read, reads go to the primary for this long before the replica is tried again. */
  replicaRetryAfterMs?: number;
  /**
   * This instance's applies, to end a ?after= wait as soon as it applied the request; without it
   * (or for a sum another instance applied) the wait polls.
   */
  appliedRequests?: Pick<AppliedRequests, 'watch'>;
  /** Told of every read (for metrics). */
  onRead?: (read: TotalRead, fallback: boolean) => void;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * Where GET /total reads, and how ?after= waits. When the replica fails, reads fall back to the
 * primary: the primary is never behind the replica, so a fallback read answers what the caller
 * asked for, only with more load on the primary. The answer's Summa-Read-Source says which one
 * served it. Only when the primary fails too does the read fail.
 */
export class TotalReader {
  private replicaDownUntil = 0;
  private replicaUp = true;
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  constructor(private readonly options: TotalReaderOptions) {
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? sleep;
  }

  get hasReplica(): boolean {
    return this.options.replica !== undefined;
  }

  /**
   * The total as `query` asks for it; with `after`, waits (polling, and woken when this instance
   * applies it) until that request's sum is in it. `signal` (the caller hung up) ends the wait early.
   */
  async read(query: TotalQuery, signal?: AbortSignal): Promise<TotalRead> {
    if (!query.after) return (await this.readOnce(query.consistency, null)).read;
    const { requestId, timeoutMs } = query.after;
    const deadline = this.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      // Watched before the read: an apply that commits while it runs still cuts the pause short.
      const watch = this.options.appliedRequests?.watch(requestId);
      try {
        const { read, applied } = await this.readOnce(query.consistency, requestId);
        if (applied) return read;
        const left = deadline - this.now();
        if (signal?.aborted) throw new SummaError('DEADLINE_EXCEEDED', 'the caller stopped waiting', { requestId });
        if (left <= 0) {
          throw new SummaError(
            'DEADLINE_EXCEEDED',
            `the sum of request id ${JSON.stringify(requestId)} was not in the total within ${timeoutMs} ms ` +
              '(it is still on its way, or was never accepted); ask again, with a longer timeoutMs if need be',
            { requestId },
          );
        }
        // Short first waits: a sum usually arrives within tens of milliseconds of its Add. When this
        // instance applies it, the pause ends then.
        await this.pause(Math.min(left, backoffDelay(attempt, 10, 160)), watch?.applied, signal);
      } finally {
        watch?.stop();
      }
    }
  }

  /** Sleeps `ms`, less if `applied` resolves first or `signal` aborts. */
  private async pause(ms: number, applied: Promise<void> | undefined, signal: AbortSignal | undefined): Promise<void> {
    if (!applied) return this.sleep(ms, signal);
    const woken = new AbortController();
    void applied.then(() => woken.abort());
    await this.sleep(ms, signal ? AbortSignal.any([signal, woken.signal]) : woken.signal);
  }

  /** The replica's lag, read there; undefined without a replica. Throws while it is unreachable. */
  async readReplicaLag(): Promise<ReplicaLag | undefined> {
    if (!this.options.replica) return undefined;
    return readReplicaLag(this.options.replica);
  }

  private async readOnce(consistency: TotalQuery['consistency'], requestId: string | null): Promise<{ read: TotalRead; applied: boolean }> {
    const replica = this.options.replica;
    const useReplica = replica !== undefined && consistency === 'eventual';
    if (useReplica && this.now() >= this.replicaDownUntil) {
      try {
        const { rows } = await replica.query<TotalRow>(REPLICA_TOTAL_SQL, [requestId]);
        this.replicaAnswered();
        const row = rows[0]!;
        const read: TotalRead = { snapshot: snapshotOf(row), source: 'replica', replicaLag: replicaLagOf(row as ReplicaLagRow) };
        this.options.onRead?.(read, false);
        return { read, applied: row.applied };
      } catch (error) {
        this.replicaFailed(error);
      }
    }
    const { rows } = await this.options.primary.query<TotalRow>(PRIMARY_TOTAL_SQL, [requestId]);
    const read: TotalRead = { snapshot: snapshotOf(rows[0]!), source: 'primary', replicaLag: undefined };
    this.options.onRead?.(read, useReplica);
    return { read, applied: rows[0]!.applied };
  }

  private replicaAnswered(): void {
    if (!this.replicaUp) this.options.logger.info('the read replica answers again; GET /total reads it again');
    this.replicaUp = true;
  }

  /** Logged once per outage, not per read: while it is down every read would say it again. */
  private replicaFailed(error: unknown): void {
    this.replicaDownUntil = this.now() + (this.options.replicaRetryAfterMs ?? 1_000);
    if (this.replicaUp) this.options.logger.warn({ err: error }, 'the read replica failed; GET /total reads the primary until it answers again');
    this.replicaUp = false;
  }
}

function snapshotOf(row: TotalRow): TotalSnapshot {
  return { total: row.total, count: Number(row.count) };
}
