// `summa status` on Kafka: which brokers the cluster knows, who leads and who is in sync on each
// partition of the event topic, and how far the totals consumer group is behind on each.
import { Admin } from '@platformatic/kafka';
import { baseClientOptions, envKafkaSecurity, kafkaSecurityEnv, parseBrokerList } from '../platform/kafka/settings.ts';
import type { KafkaClientSettings } from './run-state.ts';
import { PROBE_TIMEOUT_MS, within } from './status-probes.ts';
import { consumerLag, type KafkaMetadata, type PartitionLag, type PartitionReplicas, type TopicOffsets } from './status-report.ts';

export interface KafkaSnapshot {
  metadata: KafkaMetadata | { error: string };
  consumerLag: PartitionLag[];
  /** Why some of it is missing (the topic, the offsets), when it is. */
  error?: string;
}

/**
 * The library's TLS and SASL options for a client with these settings (PLAINTEXT: none), read as a
 * service reads its KAFKA_* variables, so that status and the services cannot disagree on them.
 */
export function kafkaConnectionOptions(settings: KafkaClientSettings | undefined) {
  const { tls, sasl } = baseClientOptions({
    brokers: ['-'],
    clientId: 'summa-status',
    security: envKafkaSecurity(kafkaSecurityEnv(settings ?? {})),
  });
  return { ...(tls ? { tls } : {}), ...(sasl ? { sasl } : {}) };
}

/** Everything status wants from Kafka, or as much of it as came within timeoutMs. */
export async function probeKafka(
  brokers: string,
  security: KafkaClientSettings | undefined,
  topic: string,
  group: string,
  /** Each connection and request; the whole snapshot gets twice that. */
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<KafkaSnapshot> {
  let admin: Admin;
  try {
    admin = new Admin({
      clientId: 'summa-status',
      bootstrapBrokers: parseBrokerList(brokers),
      connectTimeout: timeoutMs,
      requestTimeout: timeoutMs,
      timeout: timeoutMs,
      // One try: status reports what is, it does not wait for the cluster to heal.
      retries: 0,
      ...kafkaConnectionOptions(security),
    });
  } catch (error) {
    return { metadata: { error: (error as Error).message }, consumerLag: [], error: (error as Error).message };
  }
  const snapshot = async (): Promise<KafkaSnapshot> => {
    let topicError: string | undefined;
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true }).catch(async (error: Error) => {
      topicError = `topic ${topic}: ${error.message}`;
      return admin.metadata({ topics: [], forceUpdate: true });
    });
    const known: KafkaMetadata = {
      brokerIds: [...metadata.brokers.keys()].sort((a, b) => a - b),
      partitions: (metadata.topics.get(topic)?.partitions ?? []).map((p, partition) => ({
        partition,
        leader: p.leader,
        replicas: [...p.replicas],
        isr: [...p.isr],
      })),
    };
    if (topicError || known.partitions.length === 0) return { metadata: known, consumerLag: [], error: topicError ?? `topic ${topic} has no partitions` };
    const indexes = known.partitions.map((p) => p.partition);
    const offsets = (partitions: number[], timestamp: bigint) =>
      admin
        .listOffsets({ topics: [{ name: topic, partitions: partitions.map((partitionIndex) => ({ partitionIndex, timestamp })) }] })
        .then((topics) => topics.flatMap((t) => t.partitions.map((p) => [p.partitionIndex, p.offset] as const)));
    const found: TopicOffsets = { ends: new Map(), earliest: new Map(), committed: new Map(), failures: new Map() };
    // Asked leader by leader: one that is down leaves its partitions unknown, not all of them.
    const byLeader = new Map<number, PartitionReplicas[]>();
    for (const p of known.partitions) byLeader.set(p.leader, [...(byLeader.get(p.leader) ?? []), p]);
    const perLeader = [...byLeader].map(async ([leader, partitions]) => {
      const ids = partitions.map((p) => p.partition);
      const fail = (reason: string) => ids.forEach((id) => found.failures.set(id, reason));
      if (leader < 0) return fail('no leader');
      try {
        const [ends, earliest] = await Promise.all([offsets(ids, -1n), offsets(ids, -2n)]);
        ends.forEach(([id, offset]) => found.ends.set(id, offset));
        earliest.forEach(([id, offset]) => found.earliest.set(id, offset));
      } catch (error) {
        fail(`leader ${leader}: ${(error as Error).message}`);
      }
    });
    const committed = admin
      .listConsumerGroupOffsets({ groups: [{ groupId: group, topics: [{ name: topic, partitionIndexes: indexes }] }] })
      .then((groups) => {
        for (const t of groups.flatMap((g) => g.topics).filter((t) => t.name === topic)) {
          for (const p of t.partitions) found.committed.set(p.partitionIndex, p.committedOffset);
        }
        return undefined;
      })
      .catch((error: Error) => `committed offsets of group ${group}: ${error.message}`);
    const [committedError] = await Promise.all([committed, ...perLeader]);
    return {
      metadata: known,
      consumerLag: committedError ? [] : consumerLag(indexes, found),
      ...(committedError ? { error: committedError } : {}),
    };
  };
  return within<KafkaSnapshot>(timeoutMs * 2, snapshot(), (error) => ({ metadata: { error }, consumerLag: [], error })).finally(() => {
    void admin.close().catch(() => {});
  });
}
