// `summa status` on PostgreSQL: whether the server answers, and how far each replica is behind.
import pg from 'pg';
import { readReplicaLag, readStandbys } from '../platform/db/replication-lag.ts';
import { readCaptureSlot, type CaptureSlotReading } from '../outbox/capture-slot.ts';
import { PROBE_TIMEOUT_MS, within } from './status-probes.ts';
import type { PostgresProbe, ReplicaLag } from './status-report.ts';

export function probePostgres(url: string, role: 'postgres-primary' | 'postgres-replica', timeoutMs = PROBE_TIMEOUT_MS): Promise<PostgresProbe> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, application_name: 'summa-status' });
  // An error after the probe settled (the server going away) must not end the command.
  client.on('error', () => {});
  const probe = async (): Promise<PostgresProbe> => {
    await client.connect();
    if (role === 'postgres-replica') {
      const lag = await readReplicaLag(client);
      return { ok: true, inRecovery: lag.inRecovery, replicas: [], lagBytes: lag.bytes, lagSeconds: lag.seconds, streaming: lag.streaming };
    }
    const replicas: ReplicaLag[] = (await readStandbys(client)).map((standby) => ({
      name: standby.applicationName,
      state: standby.state,
      lagBytes: standby.replayLagBytes,
      replayLagSeconds: standby.replayLagSeconds,
    }));
    return { ok: true, inRecovery: false, replicas, lagBytes: null, lagSeconds: null, streaming: null };
  };
  return within<PostgresProbe>(timeoutMs + 500, probe(), (error) => ({ ok: false, error })).finally(() => {
    void client.end().catch(() => {});
  });
}

/** What the primary's replication slot for change data capture holds; an error when it cannot be asked. */
export function probeCaptureSlot(url: string, slotName: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<CaptureSlotReading | { error: string }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, application_name: 'summa-status' });
  client.on('error', () => {});
  const probe = async () => {
    await client.connect();
    return readCaptureSlot(client, slotName);
  };
  return within<CaptureSlotReading | { error: string }>(timeoutMs + 500, probe(), (error) => ({ error })).finally(() => {
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
