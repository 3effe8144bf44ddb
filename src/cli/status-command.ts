// `summa status [--json]`: what the launcher says is running (<data dir>/run/components.json), and
// how each part of it is doing now. Every component is asked in parallel with short timeouts, so the
// whole command answers within about 5 seconds even when parts hang.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { envCaptureSlotLimits, gradeCaptureSlot } from '../outbox/capture-slot.ts';
import { envInteger } from '../platform/config.ts';
import { readRunState, runStateFile, type RunComponent, type RunState } from './run-state.ts';
import type { KafkaSnapshot } from './status-kafka.ts';
import type { RetentionStatus } from './status-retention.ts';
import { pidAlive, portOpen, probeConnector, PROBE_TIMEOUT_MS, readiness } from './status-probes.ts';
import {
  brokerStatus,
  connectStatus,
  exitCodeFor,
  formatStatus,
  portsStatus,
  postgresStatus,
  serviceStatus,
  STATUS_EXIT,
  type ComponentStatus,
  type StatusReport,
} from './status-report.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The launcher's rule: SUMMA_DATA_DIR, else <repo>/.data. */
export function dataDirOf(env: NodeJS.ProcessEnv): string {
  return path.resolve(env.SUMMA_DATA_DIR ?? path.join(root, '.data'));
}

// The Kafka and PostgreSQL clients are loaded only once there is a run to ask: loading them takes
// longer than everything else, and "nothing is running" should answer at once.
const clients = async () => ({
  ...(await import('./status-kafka.ts')),
  ...(await import('./status-postgres.ts')),
  ...(await import('./status-retention.ts')),
});
type Clients = Awaited<ReturnType<typeof clients>>;

async function componentStatus(
  component: RunComponent,
  state: RunState,
  kafka: Promise<KafkaSnapshot>,
  ca: Buffer | undefined,
  timeoutMs: number,
  { probePostgres, urlOnPort }: Clients,
): Promise<ComponentStatus> {
  const alive = pidAlive(component.pid);
  switch (component.role) {
    case 'calculator':
    case 'relay':
    case 'totals': {
      const url = component.healthUrl ?? `http://127.0.0.1:${component.ports.at(-1)}/readyz`;
      return serviceStatus(component, alive, await readiness(url, { timeoutMs, ...(ca ? { ca } : {}) }));
    }
    case 'kafka-broker': {
      const [open, snapshot] = await Promise.all([component.ports[0] === undefined ? true : portOpen(component.ports[0], '127.0.0.1', timeoutMs), kafka]);
      return brokerStatus(component, alive, open, snapshot.metadata);
    }
    case 'kafka-connect':
      if (component.healthUrl) return connectStatus(component, alive, await probeConnector(component.healthUrl, timeoutMs));
      return portsStatus(component, alive, (await portOpen(component.ports[0]!, '127.0.0.1', timeoutMs)) ? [] : [component.ports[0]!]);
    case 'postgres-primary':
      return postgresStatus(component, alive, await probePostgres(state.databaseUrl, 'postgres-primary', timeoutMs));
    case 'postgres-replica':
      return postgresStatus(component, alive, await probePostgres(state.replicaDatabaseUrl ?? urlOnPort(state.databaseUrl, component.ports[0]), 'postgres-replica', timeoutMs));
    default: {
      const open = await Promise.all(component.ports.map(async (port) => [port, await portOpen(port, '127.0.0.1', timeoutMs)] as const));
      return portsStatus(component, alive, open.filter(([, ok]) => !ok).map(([port]) => port));
    }
  }
}

/** The services that keep a partitioned table, and which one. */
const KEPT_TABLES: Partial<Record<RunComponent['role'], string>> = { calculator: 'calculator.requests', totals: 'totals.applied_events' };

/**
 * Each partitioned table's retention, from the /metrics of the services that keep it: every
 * instance measures the same catalogue, so the first that answers with a reading speaks for all.
 */
async function retentionStatus(state: RunState, ca: Buffer | undefined, timeoutMs: number, { probeRetention, gradeRetention }: Clients): Promise<RetentionStatus[]> {
  const keepers = state.components.filter((component) => KEPT_TABLES[component.role] !== undefined && pidAlive(component.pid) === true);
  const readings = await Promise.all(
    keepers.map(async (component) => {
      const url = component.healthUrl ?? `http://127.0.0.1:${component.ports.at(-1)}/readyz`;
      return { component, result: await probeRetention(url, { timeoutMs, ...(ca ? { ca } : {}) }) };
    }),
  );
  const tables = [...new Set(keepers.map((component) => KEPT_TABLES[component.role]!))];
  return tables.map((table) => {
    const ofTable = readings.filter(({ component }) => KEPT_TABLES[component.role] === table);
    const read = ofTable.find(({ result }) => !('error' in result) && result.some((r) => r.table === table));
    const service = (read ?? ofTable[0])!.component.role;
    if (read) return gradeRetention(service, table, (read.result as Exclude<typeof read.result, { error: string }>).find((r) => r.table === table));
    const failed = ofTable.find(({ result }) => 'error' in result);
    return gradeRetention(service, table, undefined, failed && 'error' in failed.result ? failed.result.error : undefined);
  });
}

/** Probes everything the run state names and puts it together. */
export async function collectStatus(state: RunState, dataDir: string, env: NodeJS.ProcessEnv): Promise<StatusReport> {
  const caFile = env.TLS_CA_FILE?.trim() || state.serviceCaFile;
  const ca = caFile ? readFileSync(caFile) : undefined;
  // Longer only for a slow link or an overloaded machine: the default keeps the whole command within about 5 s.
  const timeoutMs = envInteger(env, 'SUMMA_STATUS_TIMEOUT_MS', PROBE_TIMEOUT_MS, { min: 100, max: 60_000 });
  // Read before anything is asked, so a bad threshold stops the command with its name.
  const slotLimits = envCaptureSlotLimits({ ...env, ...(state.captureSlot ? { CAPTURE_SLOT_NAME: state.captureSlot } : {}) });
  const loaded = await clients();
  const kafka = loaded.probeKafka(state.kafkaBrokers, state.kafkaAdmin, state.topic, state.consumerGroup, timeoutMs);
  const slot = state.captureSlot ? loaded.probeCaptureSlot(state.databaseUrl, slotLimits.slotName, timeoutMs) : undefined;
  const [components, retention] = await Promise.all([
    Promise.all(state.components.map((component) => componentStatus(component, state, kafka, ca, timeoutMs, loaded))),
    retentionStatus(state, ca, timeoutMs, loaded),
  ]);
  const snapshot = await kafka;
  const captureSlot = slot && { name: slotLimits.slotName, ...gradeCaptureSlot(await slot, slotLimits) };
  const launcherAlive = pidAlive(state.launcherPid) === true;
  return {
    topology: state.topology,
    dataDir,
    startedAt: state.startedAt,
    launcher: { pid: state.launcherPid, alive: launcherAlive },
    healthy: launcherAlive && components.every((component) => component.healthy),
    // The fields the issue names first, as a reader of the JSON expects them.
    components: components.map(({ name, role, pid, ports, healthy, detail, ...rest }) => ({ name, role, pid, ports, healthy, detail, ...rest })),
    consumerGroup: state.consumerGroup,
    topic: state.topic,
    consumerLag: snapshot.consumerLag,
    partitions: 'error' in snapshot.metadata ? [] : snapshot.metadata.partitions,
    ...(snapshot.error ? { kafkaError: snapshot.error } : {}),
    ...(captureSlot ? { captureSlot } : {}),
    retention,
    warnings: [
      ...(captureSlot?.warnings ?? []),
      ...components.flatMap((component) => (component.warnings ?? []).map((warning) => `${component.name}: ${warning}`)),
      ...retention.flatMap((table) => table.warnings),
    ],
  };
}

export async function runStatusCommand(env: NodeJS.ProcessEnv, options: { json: boolean }): Promise<number> {
  const dataDir = dataDirOf(env);
  const state = await readRunState(dataDir).catch((error: Error) => {
    throw new Error(`cannot read the run state ${runStateFile(dataDir)}: ${error.message}`, { cause: error });
  });
  if (!state) {
    const message = `nothing is running from ${dataDir}; start it with npm start`;
    if (options.json) console.log(JSON.stringify({ running: false, dataDir, message }));
    else console.error(`summa: ${message}`);
    return STATUS_EXIT.notRunning;
  }
  const report = await collectStatus(state, dataDir, env);
  console.log(options.json ? JSON.stringify(report, null, 2) : formatStatus(report));
  return exitCodeFor(report);
}
