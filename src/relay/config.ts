import { envDatabaseUrl, envHost, envInteger, envKafkaBrokers, envPort, envTopic } from '../platform/config.ts';
import { DEFAULT_PORTS } from '../platform/ports.ts';
import { envTlsIdentity, type TlsIdentity } from '../platform/security.ts';
import { envShutdownSettings, type ShutdownSettings } from '../platform/service/shutdown.ts';

export interface RelayConfig {
  readonly host: string;
  readonly httpPort: number;
  readonly databaseUrl: string;
  readonly kafkaBrokers: string[];
  readonly topic: string;
  readonly topicPartitions: number;
  readonly batchSize: number;
  readonly workers: number;
  readonly pollIntervalMs: number;
  readonly lingerMs: number;
  readonly shutdown: ShutdownSettings;
  /** Serves HTTP over TLS when set. */
  readonly tls: TlsIdentity | undefined;
}

export function readRelayConfig(env: Record<string, string | undefined> = process.env): RelayConfig {
  return Object.freeze({
    host: envHost(env),
    httpPort: envPort(env, 'RELAY_HTTP_PORT', DEFAULT_PORTS.relayHttp),
    databaseUrl: envDatabaseUrl(env),
    kafkaBrokers: envKafkaBrokers(env),
    topic: envTopic(env),
    topicPartitions: envInteger(env, 'KAFKA_TOPIC_PARTITIONS', 6, { min: 1, max: 1000 }),
    batchSize: envInteger(env, 'RELAY_BATCH_SIZE', 500, { min: 1, max: 10_000 }),
    workers: envInteger(env, 'RELAY_WORKERS', 2, { min: 1, max: 32 }),
    pollIntervalMs: envInteger(env, 'RELAY_POLL_INTERVAL_MS', 500, { min: 10, max: 60_000 }),
    lingerMs: envInteger(env, 'RELAY_LINGER_MS', 5, { min: 0, max: 1_000 }),
    shutdown: envShutdownSettings(env),
    tls: envTlsIdentity(env),
  });
}
