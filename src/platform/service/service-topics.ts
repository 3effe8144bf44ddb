import { Gauge, type Registry } from 'prom-client';
import { ensureTopic, type TopicDurability } from '../kafka/topics.ts';
import type { KafkaSettings } from '../kafka/settings.ts';
import type { Logger } from '../logger.ts';
import { retryUntilSuccess } from '../retry.ts';
import type { KafkaConfig } from './service-config.ts';

/**
 * Ensures each topic a service uses at start-up, retrying until Kafka answers: creates the missing
 * ones with the configured partitions and replication, and checks the existing ones. A topic weaker
 * than configured (fewer replicas, a lower min.insync.replicas) is not changed — that is the
 * operator's call — but said loudly: a warning with `weakerThanConfigured: true`, and
 * summa_kafka_topic_weaker_than_configured{topic} set to 1 for as long as the process runs.
 */
export async function ensureServiceTopics(
  kafka: KafkaSettings,
  config: Pick<KafkaConfig, 'topicPartitions' | 'topicReplicationFactor' | 'topicMinInsyncReplicas'>,
  topics: readonly string[],
  logger: Logger,
  registry: Registry,
  /** Topics tried once, not waited for: a failure is logged and start-up goes on without them. */
  bestEffort: readonly string[] = [],
): Promise<TopicDurability[]> {
  const weaker = new Gauge({
    name: 'summa_kafka_topic_weaker_than_configured',
    help: 'Whether the topic, as found at start-up, has fewer replicas or a lower min.insync.replicas than configured (1) or not (0).',
    labelNames: ['topic'],
    registers: [registry],
  });
  const spec = { partitions: config.topicPartitions, replicationFactor: config.topicReplicationFactor, minInsyncReplicas: config.topicMinInsyncReplicas };
  const found: TopicDurability[] = [];
  for (const topic of [...topics, ...bestEffort]) {
    const ensure = () => ensureTopic(kafka, topic, spec);
    const durability = bestEffort.includes(topic)
      ? await ensure().catch((error: unknown) => void logger.error({ err: error, topic }, `could not ensure the Kafka topic ${topic}; going on without it`))
      : await retryUntilSuccess(`ensuring the Kafka topic ${topic}`, ensure, logger);
    if (!durability) continue;
    const { created, replicationFactor, minInsyncReplicas, wanted, shortfalls } = durability;
    const fields = { topic, created, replicationFactor, minInsyncReplicas, configured: wanted, weakerThanConfigured: shortfalls.length > 0 };
    if (shortfalls.length > 0) {
      logger.warn(fields, `Kafka topic ${topic} is weaker than configured (${shortfalls.join(', ')}): acknowledged events survive fewer broker failures than intended`);
    } else {
      logger.info(fields, created ? `created Kafka topic ${topic}` : `Kafka topic ${topic} is as durable as configured`);
    }
    weaker.set({ topic }, shortfalls.length > 0 ? 1 : 0);
    found.push(durability);
  }
  return found;
}
