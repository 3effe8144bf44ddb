// What a running `npm start` is made of, written by the launcher into <data dir>/run/components.json
// and read by `summa status`. The launcher rewrites the file whenever a component (re)starts.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

export type ComponentRole =
  | 'calculator'
  | 'relay'
  | 'totals'
  | 'kafka-broker'
  | 'kafka-connect'
  | 'postgres-primary'
  | 'postgres-replica'
  | 'nginx'
  | 'prometheus';

export interface RunComponent {
  /** Unique within the run: "calculator-1", "kafka-2", "postgres-primary", ... */
  name: string;
  role: ComponentRole;
  /** The process's pid, or null while it is being restarted. */
  pid: number | null;
  /** Every port it listens on, the main one first. */
  ports: number[];
  /** Where its readiness is asked (services: http://127.0.0.1:PORT/ready). */
  healthUrl?: string;
  /** Kafka brokers: the node id. */
  brokerId?: number;
  logFile?: string;
}

/** How a client reaches Kafka; the password is in a file, never in the run state. */
export interface KafkaClientSettings {
  securityProtocol?: 'PLAINTEXT' | 'SSL' | 'SASL_PLAINTEXT' | 'SASL_SSL';
  saslMechanism?: string;
  username?: string;
  passwordFile?: string;
  caFile?: string;
}

export interface RunState {
  topology: 'single' | 'cluster';
  launcherPid: number;
  startedAt: string;
  databaseUrl: string;
  replicaDatabaseUrl?: string;
  kafkaBrokers: string;
  /** An administrator's Kafka settings (status reads metadata and the consumer group's offsets). */
  kafkaAdmin?: KafkaClientSettings;
  /** The CA (PEM file) the services' HTTPS certificates chain to, when they serve HTTPS; status trusts it for their healthUrl. */
  serviceCaFile?: string;
  /** The totals service's consumer group and the event topic. */
  consumerGroup: string;
  topic: string;
  /** Under change data capture (npm start -- --relay debezium): the outbox's replication slot. */
  captureSlot?: string;
  components: RunComponent[];
}

export function runStateFile(dataDir: string): string {
  return path.join(dataDir, 'run', 'components.json');
}

/** Written whole to a temporary file and renamed, so a reader never sees half of it. */
export async function writeRunState(dataDir: string, state: RunState): Promise<void> {
  const file = runStateFile(dataDir);
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await rename(temporary, file);
}

/** The state of the run in dataDir, or null when nothing was started from it. */
export async function readRunState(dataDir: string): Promise<RunState | null> {
  const text = await readFile(runStateFile(dataDir), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  return text === null ? null : (JSON.parse(text) as RunState);
}
