import { Admin } from '@platformatic/kafka';
import { sleep } from '../backoff.ts';
import { baseClientOptions, type KafkaSettings } from './settings.ts';

const METADATA_TIMEOUT_MS = 30_000;

/**
 * Creates `topic` with `partitions` partitions (replication: the broker's default) unless it exists,
 * then waits until every partition has a leader. Safe to race from several instances. An existing
 * topic is left as it is, whatever its partition count.
 */
export async function ensureTopic(settings: KafkaSettings, topic: string, partitions: number): Promise<void> {
  const admin = new Admin(baseClientOptions(settings));
  try {
    try {
      await admin.createTopics({ topics: [topic], partitions });
    } catch (error) {
      if (!isTopicAlreadyExists(error)) throw error;
    }
    await waitForLeaders(admin, topic);
  } finally {
    await admin.close().catch(() => {});
  }
}

function isTopicAlreadyExists(error: unknown): boolean {
  // @platformatic/kafka errors (GenericError, MultipleErrors) search their nested causes with findBy.
  const searchable = error as { findBy?: (property: string, value: unknown) => unknown } | null;
  return Boolean(searchable?.findBy?.('apiId', 'TOPIC_ALREADY_EXISTS'));
}

async function waitForLeaders(admin: Admin, topic: string): Promise<void> {
  const deadline = Date.now() + METADATA_TIMEOUT_MS;
  let lastProblem: unknown = 'no metadata yet';
  while (Date.now() < deadline) {
    try {
      const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
      const partitions = metadata.topics.get(topic)?.partitions ?? [];
      if (partitions.length > 0 && partitions.every((partition) => partition?.leader >= 0)) return;
      lastProblem = `partitions without a leader: ${JSON.stringify(partitions.map((p) => p?.leader))}`;
    } catch (error) {
      // Right after creation the broker may still answer UNKNOWN_TOPIC_OR_PARTITION.
      lastProblem = error;
    }
    await sleep(100);
  }
  throw new Error(`Topic ${topic} has no leader for every partition after ${METADATA_TIMEOUT_MS}ms`, {
    cause: lastProblem,
  });
}
