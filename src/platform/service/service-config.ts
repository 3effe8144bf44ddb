import { ConfigError, envDatabaseUrl, envHost, envInteger, envKafkaBrokers, envOptionalInteger, envPort, envTopic, type Env } from '../config.ts';
// Not from publisher.ts: that would load the Kafka client into every service that reads its
// configuration, the calculator included, which never uses it.
import { DEFAULT_PUBLISH_TIMEOUT_MS, envKafkaSecurity, type KafkaSecurity, type KafkaSettings } from '../kafka/settings.ts';
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
  /** TLS and SASL towards Kafka (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_TLS_CA_FILE). */
  readonly kafkaSecurity: KafkaSecurity;
  /** Partitions of the topics the service creates when they do not exist yet. */
  readonly topicPartitions: number;
  /**
   * Replicas of each partition of the topics the service creates, and how many of them must have a
   * record before Kafka acknowledges it (acks=all); an existing topic with fewer is reported. Unset:
   * chosen by the cluster's size when the topic is ensured (see src/platform/kafka/topics.ts).
   */
  readonly topicReplicationFactor: number | undefined;
  readonly topicMinInsyncReplicas: number | undefined;
  /**
   * How long a publish to Kafka may take before it fails as Kafka being unavailable (its events are
   * sent again later); see EventPublisherOptions.publishTimeoutMs. The relay shortens the default
   * to fit its lease (src/relay/config.ts).
   */
  readonly publishTimeoutMs: number;
}

export function envKafkaConfig(env: Env): KafkaConfig {
  const topicReplicationFactor = envOptionalInteger(env, 'KAFKA_REPLICATION_FACTOR', { min: 1, max: 32 });
  const topicMinInsyncReplicas = envOptionalInteger(env, 'KAFKA_MIN_INSYNC_REPLICAS', { min: 1, max: 32 });
  // Kafka would accept such a topic, and then refuse every acks=all write to it.
  if (topicReplicationFactor !== undefined && topicMinInsyncReplicas !== undefined && topicMinInsyncReplicas > topicReplicationFactor) {
    throw new ConfigError(
      `KAFKA_MIN_INSYNC_REPLICAS (${topicMinInsyncReplicas}) must not exceed KAFKA_REPLICATION_FACTOR (${topicReplicationFactor}): ` +
        'no write could ever be acknowledged',
    );
  }
  return {
    kafkaBrokers: envKafkaBrokers(env),
    kafkaSecurity: envKafkaSecurity(env),
    topicPartitions: envInteger(env, 'KAFKA_TOPIC_PARTITIONS', 6, { min: 1, max: 1000 }),
    topicReplicationFactor,
    topicMinInsyncReplicas,
    publishTimeoutMs: envInteger(env, 'KAFKA_PUBLISH_TIMEOUT_MS', DEFAULT_PUBLISH_TIMEOUT_MS, { min: 1_000, max: 600_000 }),
  };
}

/** The settings of the service's Kafka clients, which name themselves `clientId`. */
export function kafkaSettingsOf(config: KafkaConfig, clientId: string): KafkaSettings {
  return { brokers: config.kafkaBrokers, clientId, security: config.kafkaSecurity };
}
