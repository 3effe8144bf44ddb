import { envDatabaseUrl, envHost, envInteger, envKafkaBrokers, envPort, envString, envTopic } from '../platform/config.ts';

export interface TotalsConfig {
  readonly host: string;
  readonly httpPort: number;
  readonly databaseUrl: string;
  readonly kafkaBrokers: string[];
  readonly topic: string;
  readonly topicPartitions: number;
  readonly groupId: string;
  readonly maxBatchSize: number;
}

export function readTotalsConfig(env: Record<string, string | undefined> = process.env): TotalsConfig {
  return Object.freeze({
    host: envHost(env),
    httpPort: envPort(env, 'TOTALS_HTTP_PORT', 8080),
    databaseUrl: envDatabaseUrl(env),
    kafkaBrokers: envKafkaBrokers(env),
    topic: envTopic(env),
    topicPartitions: envInteger(env, 'KAFKA_TOPIC_PARTITIONS', 6, { min: 1, max: 1000 }),
    groupId: envString(env, 'TOTALS_GROUP_ID', 'summa-totals'),
    maxBatchSize: envInteger(env, 'TOTALS_BATCH_SIZE', 500, { min: 1, max: 10_000 }),
  });
}
