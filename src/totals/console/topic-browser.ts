// The console's Kafka browser: the topics with their partitions, leaders, in-sync replicas and
// offsets; the consumer group's committed offsets; and the latest records of one partition, read
// with a plain Fetch at an offset (no consumer group is joined, so browsing moves nobody's offsets).
import { Admin, Consumer, type ClusterMetadata } from '@platformatic/kafka';
import { decodeSumAccepted, sumAcceptedJson } from '../../events/sum-accepted.ts';
import { SummaError } from '../../platform/errors.ts';
import type { baseClientOptions } from '../../platform/kafka/settings.ts';
import { DEAD_LETTER_HEADERS } from '../dead-letters.ts';

/** The library's connection options: bootstrap brokers, client id, TLS and SASL. */
export type BrowserClientOptions = ReturnType<typeof baseClientOptions>;

export interface PartitionView {
  partition: number;
  leader: number;
  replicas: number[];
  isr: number[];
  earliest: string | null;
  end: string | null;
  /** The group's committed offset (event topic only); null when none. */
  committed: string | null;
  lag: string | null;
}

export interface TopicView {
  name: string;
  partitions: PartitionView[];
}

export interface TopicsView {
  brokers: { id: number; host: string; port: number }[];
  controllerId: number;
  group: string;
  topics: TopicView[];
}

export interface RecordView {
  offset: string;
  timestamp: string;
  key: string | null;
  headers: Record<string, string>;
  /** The value as text when it is UTF-8, else base64. */
  value: string;
  valueEncoding: 'utf8' | 'base64';
  /** The value read as a SumAccepted event, or why it is not one. */
  decoded: Record<string, string> | { error: string };
  /** A dead letter's reason (its summa-dlq-reason header). */
  reason?: string;
}

export interface TopicBrowserOptions {
  /** Called each time a client is made, so that it follows the run state (the admin's credentials in a cluster). */
  clientOptions: () => Promise<BrowserClientOptions>;
  topic: string;
  groupId: string;
  timeoutMs?: number;
}

export const MAX_RECORDS = 100;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export class TopicBrowser {
  private admin: Admin | undefined;
  private consumer: Consumer | undefined;

  constructor(private readonly options: TopicBrowserOptions) {}

  async topics(): Promise<TopicsView> {
    return this.withClients(async (admin) => {
      const names = (await admin.listTopics()).filter((name) => !name.startsWith('__')).sort();
      const metadata = await admin.metadata({ topics: names, forceUpdate: true });
      const committed = await this.committedOffsets(admin, metadata);
      const topics = await Promise.all(
        names.map(async (name): Promise<TopicView> => {
          const partitions = metadata.topics.get(name)?.partitions ?? [];
          const indexes = partitions.map((_, index) => index);
          const [earliest, ends] = await Promise.all([this.offsets(admin, name, indexes, -2n), this.offsets(admin, name, indexes, -1n)]);
          return {
            name,
            partitions: partitions.map((p, partition) => {
              const end = ends.get(partition);
              const offset = name === this.options.topic ? committed.get(partition) : undefined;
              const from = offset !== undefined && offset >= 0n ? offset : earliest.get(partition);
              return {
                partition,
                leader: p.leader,
                replicas: [...p.replicas],
                isr: [...p.isr],
                earliest: earliest.get(partition)?.toString() ?? null,
                end: end?.toString() ?? null,
                committed: offset !== undefined && offset >= 0n ? offset.toString() : null,
                lag: name === this.options.topic && end !== undefined && from !== undefined ? (end > from ? end - from : 0n).toString() : null,
              };
            }),
          };
        }),
      );
      return {
        brokers: [...metadata.brokers].map(([id, broker]) => ({ id, host: broker.host, port: broker.port })).sort((a, b) => a.id - b.id),
        controllerId: metadata.controllerId,
        group: this.options.groupId,
        topics,
      };
    });
  }

  /** The latest `limit` records of a partition, newest first. */
  async latestRecords(topic: string, partition: number, limit: number): Promise<RecordView[]> {
    return this.withClients(async (admin, consumer) => {
      const metadata = await admin.metadata({ topics: [topic] }).catch((error: Error) => {
        throw new SummaError('NOT_FOUND', `topic ${topic}: ${error.message}`);
      });
      const topicMetadata = metadata.topics.get(topic);
      const leader = topicMetadata?.partitions[partition]?.leader;
      if (!topicMetadata || leader === undefined) throw new SummaError('NOT_FOUND', `topic ${topic} has no partition ${partition}`);
      if (leader < 0) throw new SummaError('UNAVAILABLE', `partition ${partition} of ${topic} has no leader`);
      const [earliest, end] = await Promise.all([this.offsets(admin, topic, [partition], -2n), this.offsets(admin, topic, [partition], -1n)]);
      const first = earliest.get(partition) ?? 0n;
      const next = end.get(partition) ?? 0n;
      const from = next - BigInt(limit) > first ? next - BigInt(limit) : first;
      if (from >= next) return [];
      const records: RecordView[] = [];
      let offset = from;
      // A fetch returns whole batches up to a size, so it may take a few to reach the end.
      for (let round = 0; round < 10 && offset < next; round++) {
        const response = await consumer.fetch({
          node: leader,
          maxWaitTime: 0,
          minBytes: 1,
          maxBytes: 4 * 1024 * 1024,
          topics: [{ topicId: topicMetadata.id, partitions: [{ partition, fetchOffset: offset, partitionMaxBytes: 1024 * 1024, currentLeaderEpoch: -1, lastFetchedEpoch: -1 }] }],
        });
        const batches = response.responses.flatMap((t) => t.partitions).flatMap((p) => p.records ?? []);
        let moved = false;
        for (const batch of batches) {
          for (const record of batch.records) {
            const at = batch.firstOffset + BigInt(record.offsetDelta);
            if (at < offset || at >= next) continue;
            records.push(recordView(at, batch.firstTimestamp + record.timestampDelta, record.key, record.value, record.headers));
            offset = at + 1n;
            moved = true;
          }
        }
        if (!moved) break;
      }
      return records.reverse();
    });
  }

  async close(): Promise<void> {
    const clients = [this.admin, this.consumer];
    this.admin = undefined;
    this.consumer = undefined;
    await Promise.all(clients.map((client) => client?.close().catch(() => {})));
  }

  /** A failure drops the clients, so that the next call connects afresh (to a restarted broker, with rotated credentials). */
  private async withClients<T>(work: (admin: Admin, consumer: Consumer) => Promise<T>): Promise<T> {
    if (!this.admin || !this.consumer) {
      const options = await this.options.clientOptions();
      const timeout = this.options.timeoutMs ?? 3_000;
      const common = { ...options, connectTimeout: timeout, requestTimeout: timeout, timeout, retries: 0 };
      this.admin = new Admin(common);
      // The group id is required by the constructor; the browser never joins it.
      this.consumer = new Consumer({ ...common, groupId: `${this.options.groupId}-console` });
    }
    try {
      return await work(this.admin, this.consumer);
    } catch (error) {
      if (!(error instanceof SummaError)) void this.close();
      throw error instanceof SummaError ? error : new SummaError('UNAVAILABLE', `Kafka: ${(error as Error).message}`, { cause: error });
    }
  }

  private async offsets(admin: Admin, topic: string, partitions: number[], timestamp: bigint): Promise<Map<number, bigint>> {
    if (partitions.length === 0) return new Map();
    const topics = await admin.listOffsets({ topics: [{ name: topic, partitions: partitions.map((partitionIndex) => ({ partitionIndex, timestamp })) }] });
    return new Map(topics.flatMap((t) => t.partitions.map((p) => [p.partitionIndex, p.offset] as const)));
  }

  private async committedOffsets(admin: Admin, metadata: ClusterMetadata): Promise<Map<number, bigint>> {
    const partitions = metadata.topics.get(this.options.topic)?.partitions ?? [];
    if (partitions.length === 0) return new Map();
    const groups = await admin.listConsumerGroupOffsets({
      groups: [{ groupId: this.options.groupId, topics: [{ name: this.options.topic, partitionIndexes: partitions.map((_, index) => index) }] }],
    });
    const committed = new Map<number, bigint>();
    for (const t of groups.flatMap((g) => g.topics).filter((t) => t.name === this.options.topic)) {
      for (const p of t.partitions) committed.set(p.partitionIndex, p.committedOffset);
    }
    return committed;
  }
}

function recordView(offset: bigint, timestamp: bigint, key: Buffer | null, value: Buffer | null, rawHeaders: [Buffer | null, Buffer | null][]): RecordView {
  const headers: Record<string, string> = {};
  for (const [name, headerValue] of rawHeaders) if (name) headers[name.toString()] = headerValue?.toString() ?? '';
  const bytes = value ?? Buffer.alloc(0);
  let text: string | undefined;
  try {
    text = utf8.decode(bytes);
  } catch {
    text = undefined;
  }
  let decoded: RecordView['decoded'];
  try {
    const { type: _type, version: _version, ...fields } = sumAcceptedJson(decodeSumAccepted(bytes));
    decoded = fields;
  } catch (error) {
    decoded = { error: (error as Error).message };
  }
  const reason = headers[DEAD_LETTER_HEADERS.reason];
  return {
    offset: offset.toString(),
    timestamp: new Date(Number(timestamp)).toISOString(),
    key: key?.toString() ?? null,
    headers,
    value: text ?? bytes.toString('base64'),
    valueEncoding: text === undefined ? 'base64' : 'utf8',
    decoded,
    ...(reason === undefined ? {} : { reason }),
  };
}
