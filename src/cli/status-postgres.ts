// `summa status` on PostgreSQL: whether the server answers, and how far each replica is behind.
import pg from 'pg';
import { PROBE_TIMEOUT_MS, within } from './status-probes.ts';
import type { PostgresProbe, ReplicaLag } from './status-report.ts';

// The LSN and lag columns of pg_stat_replication show only to superusers and pg_read_all_stats;
// another user gets NULLs there, reported as unknown rather than as no lag.
const PRIMARY_REPLICAS = `
  SELECT application_name, client_addr::text AS client_addr, state,
         pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS lag_bytes,
         extract(epoch FROM replay_lag)::float8 AS replay_lag_seconds
    FROM pg_stat_replication
   ORDER BY application_name`;

// pg_last_xact_replay_timestamp() is the primary's commit time of the last transaction replayed:
// while the primary commits nothing, this "lag" grows although nothing is behind.
const REPLICA_LAG = `
  SELECT pg_is_in_recovery() AS in_recovery,
         pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8 AS lag_bytes,
         extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS lag_seconds,
         (SELECT status FROM pg_stat_wal_receiver) AS receiver`;

export function probePostgres(url: string, role: 'postgres-primary' | 'postgres-replica', timeoutMs = PROBE_TIMEOUT_MS): Promise<PostgresProbe> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, application_name: 'summa-status' });
  // An error after the probe settled (the server going away) must not end the command.
  client.on('error', () => {});
  const probe = async (): Promise<PostgresProbe> => {
    await client.connect();
    if (role === 'postgres-replica') {
      const row = (await client.query(REPLICA_LAG)).rows[0];
      return { ok: true, inRecovery: row.in_recovery, replicas: [], lagBytes: row.lag_bytes, lagSeconds: row.lag_seconds, receiver: row.receiver };
    }
    await client.query('SELECT 1');
    const replicas: ReplicaLag[] = (await client.query(PRIMARY_REPLICAS)).rows.map((row) => ({
      name: row.application_name,
      clientAddress: row.client_addr,
      state: row.state,
      lagBytes: row.lag_bytes,
      replayLagSeconds: row.replay_lag_seconds,
    }));
    return { ok: true, inRecovery: false, replicas, lagBytes: null, lagSeconds: null, receiver: null };
  };
  return within<PostgresProbe>(timeoutMs + 500, probe(), (error) => ({ ok: false, error })).finally(() => {
    void client.end().catch(() => {});
  });
}

/** The replica's URL when the run state does not give one: the primary's, on the replica's port. */
export function urlOnPort(url: string, port: number | undefined): string {
  if (port === undefined) return url;
  const parsed = new URL(url);
  parsed.port = String(port);
  return parsed.toString();
}
