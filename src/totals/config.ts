import { ConfigError, envDatabaseUrl, envHost, envInteger, envKafkaBrokers, envPort, envString, envTopic } from '../platform/config.ts';
import { DEFAULT_PORTS } from '../platform/ports.ts';
import { envTlsIdentity, type TlsIdentity } from '../platform/security.ts';
import { envShutdownSettings, type ShutdownSettings } from '../platform/service/shutdown.ts';

export interface TotalsConfig {
  readonly host: string;
  readonly httpPort: number;
  readonly databaseUrl: string;
  readonly kafkaBrokers: string[];
  readonly topic: string;
  readonly topicPartitions: number;
  readonly groupId: string;
  readonly maxBatchSize: number;
  /** Where records that are not valid events go, with the reason in a header. */
  readonly deadLetterTopic: string;
  readonly shutdown: ShutdownSettings;
  /** Serves HTTP over TLS when set. */
  readonly tls: TlsIdentity | undefined;
}

export function readTotalsConfig(env: Record<string, string | undefined> = process.env): TotalsConfig {
  return Object.freeze({
    host: envHost(env),
    httpPort: envPort(env, 'TOTALS_HTTP_PORT', DEFAULT_PORTS.totalsHttp),
    databaseUrl: envDatabaseUrl(env),
    kafkaBrokers: envKafkaBrokers(env),
    topic: envTopic(env),
    topicPartitions: envInteger(env, 'KAFKA_TOPIC_PARTITIONS', 6, { min: 1, max: 1000 }),
    groupId: envString(env, 'TOTALS_GROUP_ID', 'summa-totals'),
    maxBatchSize: envInteger(env, 'TOTALS_BATCH_SIZE', 500, { min: 1, max: 10_000 }),
    deadLetterTopic: envDeadLetterTopic(env),
    shutdown: envShutdownSettings(env),
    tls: envTlsIdentity(env),
  });
}

function envDeadLetterTopic(env: Record<string, string | undefined>): string {
  const topic = envString(env, 'TOTALS_DEAD_LETTER_TOPIC', `${envTopic(env)}.dlq`);
  if (!/^[a-zA-Z0-9._-]{1,249}$/.test(topic)) {
    throw new ConfigError(`TOTALS_DEAD_LETTER_TOPIC must be a valid Kafka topic name, got ${JSON.stringify(topic)}`);
  }
  if (topic === envTopic(env)) throw new ConfigError('TOTALS_DEAD_LETTER_TOPIC must differ from KAFKA_TOPIC');
  return topic;
}
