import { envDatabaseUrl, envHost, envInteger, envKafkaBrokers, envPort, envTopic, type Env } from '../config.ts';
import { envTlsIdentity, type TlsIdentity } from '../security.ts';
import { envShutdownSettings, type ShutdownSettings } from './shutdown.ts';

/** The settings every service reads, under the same variables; each service's config adds its own. */
export interface ServiceConfig {
  readonly host: string;
  readonly httpPort: number;
  readonly databaseUrl: string;
  readonly topic: string;
  readonly shutdown: ShutdownSettings;
  /** Serves every listener of the service over TLS when set. */
  readonly tls: TlsIdentity | undefined;
}

/** The HTTP port is the one setting whose variable differs per service (CALCULATOR_HTTP_PORT, ...). */
export function envServiceConfig(env: Env, httpPortVariable: string, defaultHttpPort: number): ServiceConfig {
  return {
    host: envHost(env),
    httpPort: envPort(env, httpPortVariable, defaultHttpPort),
    databaseUrl: envDatabaseUrl(env),
    topic: envTopic(env),
    shutdown: envShutdownSettings(env),
    tls: envTlsIdentity(env),
  };
}

/** What a service that is a Kafka client itself (the relay, the totals service) reads besides. */
export interface KafkaConfig {
  readonly kafkaBrokers: string[];
  /** Partitions of the topics the service creates when they do not exist yet. */
  readonly topicPartitions: number;
}

export function envKafkaConfig(env: Env): KafkaConfig {
  return {
    kafkaBrokers: envKafkaBrokers(env),
    topicPartitions: envInteger(env, 'KAFKA_TOPIC_PARTITIONS', 6, { min: 1, max: 1000 }),
  };
}
