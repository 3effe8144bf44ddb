/** Anything that runs a query: a pool, a client. */
export interface Queryable {
  query<R extends object>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

/** How far a streaming replica is behind, as the replica itself sees it. */
export interface ReplicaLag {
  /** False when the server is not a standby at all (a promoted replica, or the primary by mistake). */
  inRecovery: boolean;
  /** Whether the WAL receiver is connected to the primary and streaming. */
  streaming: boolean;
  /** WAL received but not yet replayed; null when nothing was received since start. */
  bytes: number | null;
  /**
   * How old the data read there may be, in seconds: 0 while everything received is replayed and the
   * receiver streams; else the time since the last replayed commit (an upper bound while the
   * primary is idle or unreachable); null when nothing was replayed since start.
   */
  seconds: number | null;
}

/**
 * Written as one expression list, so that a caller can put it beside its own read in one statement
 * (and one snapshot): the totals service reads the total and the lag it was read at together. The
 * WAL receiver's state is read once: pg_stat_wal_receiver is a live view, and two reads of it in
 * one statement may disagree.
 */
export const REPLICA_LAG_COLUMNS = `
  pg_is_in_recovery() AS in_recovery,
  coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false) AS streaming,
  pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8 AS lag_bytes,
  extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 AS replay_age_seconds`;

export interface ReplicaLagRow {
  in_recovery: boolean;
  streaming: boolean;
  lag_bytes: number | null;
  replay_age_seconds: number | null;
}

export function replicaLagOf(row: ReplicaLagRow): ReplicaLag {
  const bytes = row.lag_bytes === null ? null : Math.max(0, row.lag_bytes);
  // Caught up with what it received, and receiving: as fresh as the primary has sent. Otherwise the
  // last replayed commit's age bounds how old its data may be (too high while the primary is idle).
  const caughtUp = !row.in_recovery || (row.streaming && bytes === 0);
  const seconds = caughtUp ? 0 : row.replay_age_seconds === null ? null : Math.max(0, row.replay_age_seconds);
  return { inRecovery: row.in_recovery, streaming: row.streaming, bytes, seconds };
}

/** The lag of the replica `db` is connected to, read there. */
export async function readReplicaLag(db: Queryable): Promise<ReplicaLag> {
  const { rows } = await db.query<ReplicaLagRow>(`SELECT ${REPLICA_LAG_COLUMNS}`);
  return replicaLagOf(rows[0]!);
}

/** A standby streaming from this primary, as pg_stat_replication shows it. */
export interface StandbyStatus {
  applicationName: string;
  /** streaming, catchup, startup, backup, stopping. */
  state: string;
  /** WAL the primary wrote that the standby has not replayed yet. */
  replayLagBytes: number;
  /**
   * PostgreSQL's measured replay lag; 0 once the standby has replayed everything (PostgreSQL
   * clears its figure when the primary goes idle).
   */
  replayLagSeconds: number;
}

/** The standbys streaming from the primary `db` is connected to (needs a superuser or pg_monitor). */
export async function readStandbys(db: Queryable): Promise<StandbyStatus[]> {
  const { rows } = await db.query<{ application_name: string; state: string; lag_bytes: number | null; lag_seconds: number | null }>(`
    SELECT application_name, state,
           pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS lag_bytes,
           extract(epoch FROM replay_lag)::float8 AS lag_seconds
    FROM pg_stat_replication ORDER BY application_name`);
  return rows.map((row) => ({
    applicationName: row.application_name,
    state: row.state,
    replayLagBytes: Math.max(0, row.lag_bytes ?? 0),
    replayLagSeconds: row.lag_bytes === 0 ? 0 : Math.max(0, row.lag_seconds ?? 0),
  }));
}
