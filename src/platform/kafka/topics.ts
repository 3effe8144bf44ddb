import { Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { sleep } from '../backoff.ts';
import { ConfigError } from '../config.ts';
import { baseClientOptions, type KafkaSettings } from './settings.ts';

const METADATA_TIMEOUT_MS = 30_000;

/** What a service asks of a topic it uses. */
export interface TopicSpec {
  /** Partitions, when the topic is created. */
  partitions: number;
  /** Replicas of each partition. Unset: 3 on a cluster of 3 brokers or more, else one per broker. */
  replicationFactor?: number | undefined;
  /**
   * Replicas that must have a record before an acks=all write is acknowledged, so that losing the
   * others loses nothing acknowledged. Unset: 2 when there are 3 replicas or more, else 1.
   */
  minInsyncReplicas?: number | undefined;
}

export interface TopicDurability {
  topic: string;
  /** Whether this call created it (false: it existed, or another instance created it meanwhile). */
  created: boolean;
  /** The fewest replicas any of its partitions has. */
  replicationFactor: number;
  /** Its effective min.insync.replicas (its own setting, or the broker's default). */
  minInsyncReplicas: number;
  /** What the spec asked for, unset values decided by the cluster's size. */
  wanted: { replicationFactor: number; minInsyncReplicas: number };
  /** Where it falls short of `wanted`, in words ("replication factor 1 < 3"); empty when it does not. */
  shortfalls: string[];
}

/**
 * Creates `topic` as `spec` says unless it exists, waits until every partition has a leader, and
 * tells how durable the topic is against what the spec asked for. Safe to race from several
 * instances. An existing topic is never changed (its partitions, replicas and settings are the
 * operator's to decide), only checked: a weaker one shows in `shortfalls`.
 *
 * Throws a ConfigError when the spec cannot be met by any topic: a min.insync.replicas above the
 * replication factor.
 */
export async function ensureTopic(settings: KafkaSettings, topic: string, spec: TopicSpec): Promise<TopicDurability> {
  const admin = new Admin(baseClientOptions(settings));
  try {
    const brokers = (await admin.metadata({ topics: [] })).brokers.size;
    const wanted = durabilityFor(spec, brokers);
    let created = false;
    if (!(await admin.listTopics()).includes(topic)) {
      try {
        await admin.createTopics({
          topics: [topic],
          partitions: spec.partitions,
          replicas: wanted.replicationFactor,
          configs: [{ name: 'min.insync.replicas', value: String(wanted.minInsyncReplicas) }],
        });
        created = true;
      } catch (error) {
        if (!isTopicAlreadyExists(error)) throw error;
      }
    }
    const partitions = await waitForLeaders(admin, topic);
    const replicationFactor = Math.min(...partitions.filter(Boolean).map((partition) => partition.replicas.length));
    const minInsyncReplicas = await readMinInsyncReplicas(admin, topic);
    const shortfalls: string[] = [];
    if (replicationFactor < wanted.replicationFactor) shortfalls.push(`replication factor ${replicationFactor} < ${wanted.replicationFactor}`);
    if (minInsyncReplicas < wanted.minInsyncReplicas) shortfalls.push(`min.insync.replicas ${minInsyncReplicas} < ${wanted.minInsyncReplicas}`);
    return { topic, created, replicationFactor, minInsyncReplicas, wanted, shortfalls };
  } finally {
    await admin.close().catch(() => {});
  }
}

/** The spec's replication, its unset parts chosen for a cluster of `brokers`. */
export function durabilityFor(spec: TopicSpec, brokers: number): TopicDurability['wanted'] {
  const replicationFactor = spec.replicationFactor ?? Math.max(1, Math.min(3, brokers));
  const minInsyncReplicas = spec.minInsyncReplicas ?? (replicationFactor >= 3 ? 2 : 1);
  if (minInsyncReplicas > replicationFactor) {
    throw new ConfigError(
      `KAFKA_MIN_INSYNC_REPLICAS (${minInsyncReplicas}) must not exceed the replication factor (${replicationFactor}` +
        `${spec.replicationFactor === undefined ? `, chosen for a cluster of ${brokers} broker(s); set KAFKA_REPLICATION_FACTOR` : ''})`,
    );
  }
  return { replicationFactor, minInsyncReplicas };
}

function isTopicAlreadyExists(error: unknown): boolean {
  // @platformatic/kafka errors (GenericError, MultipleErrors) search their nested causes with findBy.
  const searchable = error as { findBy?: (property: string, value: unknown) => unknown } | null;
  return Boolean(searchable?.findBy?.('apiId', 'TOPIC_ALREADY_EXISTS'));
}

async function readMinInsyncReplicas(admin: Admin, topic: string): Promise<number> {
  const [described] = await admin.describeConfigs({
    resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: ['min.insync.replicas'] }],
  });
  const value = described?.configs.find((config) => config.name === 'min.insync.replicas')?.value;
  if (!value || !/^\d+$/.test(value)) throw new Error(`Topic ${topic}: no min.insync.replicas in its description (${JSON.stringify(value)})`);
  return Number(value);
}

async function waitForLeaders(admin: Admin, topic: string): Promise<{ leader: number; replicas: number[] }[]> {
  const deadline = Date.now() + METADATA_TIMEOUT_MS;
  let lastProblem: unknown = 'no metadata yet';
  while (Date.now() < deadline) {
    try {
      const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
      const partitions = metadata.topics.get(topic)?.partitions ?? [];
      if (partitions.length > 0 && partitions.every((partition) => partition?.leader >= 0)) return partitions;
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
