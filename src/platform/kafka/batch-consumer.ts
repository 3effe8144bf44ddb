import { ListOffsetTimestamps, type Consumer } from '@platformatic/kafka';
import type { ConsumerSession } from './consumer-session.ts';
import { DeliveryLoop } from './delivery-loop.ts';
import { createMembership } from './group-member.ts';
import type { IncomingRecord } from './records.ts';
import type { KafkaSettings } from './settings.ts';

export interface BatchConsumerOptions extends KafkaSettings {
  groupId: string;
  topic: string;
  /** Most records handed to one onBatch call (default 500). */
  maxBatchSize?: number;
  /** How long a batch may wait for more records once it has one (default 20ms). */
  maxWaitMs?: number;
  /** How soon the group gives the partitions of a member that vanished to the others (default 10s). */
  sessionTimeoutMs?: number;
  /** How long start() keeps trying to join the group before it rejects (default 60s). */
  startTimeoutMs?: number;
  /** Told about every error the consumer recovers from (failed onBatch, lost connection, ...). */
  onError?: (error: unknown, context: string) => void;
}

export interface BatchConsumer {
  /** Joins the group and starts delivering batches; resolves once joined. Call it once. */
  start(): Promise<void>;
  /** Stops fetching, waits for an in-flight onBatch and its commit, leaves the group. */
  close(): Promise<void>;
  /** Records not yet committed, per partition currently assigned to this member. */
  lag(): Promise<Map<number, bigint>>;
}

/**
 * Consumes `topic` as member of `groupId`, handing records to `onBatch` in batches, one call at a
 * time. Offsets are committed only after onBatch resolved, so delivery is at-least-once: after a
 * crash, a rebalance or a lost connection, records since the last commit come again. A batch whose
 * onBatch throws is retried as it is (backoff 100ms..5s) until it succeeds or close() is called.
 * A new group starts from the earliest offset.
 */
export function createBatchConsumer(
  options: BatchConsumerOptions,
  onBatch: (records: IncomingRecord[]) => Promise<void>,
): BatchConsumer {
  const maxBatchSize = options.maxBatchSize ?? 500;
  const closing = new AbortController();
  const membership = createMembership({ ...options, sessionTimeoutMs: options.sessionTimeoutMs ?? 10_000, maxBatchSize });
  const loop = new DeliveryLoop(
    membership,
    {
      topic: options.topic,
      maxBatchSize,
      maxWaitMs: options.maxWaitMs ?? 20,
      startTimeoutMs: options.startTimeoutMs ?? 60_000,
      report: options.onError ?? (() => {}),
    },
    onBatch,
    closing.signal,
  );
  let starting: Promise<ConsumerSession> | null = null;
  let running: Promise<void> | null = null;

  return {
    async start() {
      if (starting) throw new Error('BatchConsumer already started');
      starting = loop.join();
      running = loop.run(await starting);
    },

    async close() {
      closing.abort();
      await starting?.catch(() => {});
      await running;
    },

    lag() {
      return lagOf(loop.session?.member.consumer, options.topic);
    },
  };
}

/** Records not yet committed, per partition assigned to `consumer` (none without one). */
async function lagOf(consumer: Consumer | undefined, topic: string): Promise<Map<number, bigint>> {
  const partitions = consumer?.assignments?.find((a) => a.topic === topic)?.partitions ?? [];
  const lags = new Map<number, bigint>();
  if (!consumer || partitions.length === 0) return lags;
  const topics = [topic];
  const [latest, earliest, committed] = await Promise.all([
    consumer.listOffsets({ topics }),
    consumer.listOffsets({ topics, timestamp: ListOffsetTimestamps.EARLIEST }),
    consumer.listCommittedOffsets({ topics: [{ topic, partitions }] }),
  ]);
  for (const partition of partitions) {
    const end = latest.get(topic)?.[partition] ?? 0n;
    const position = committed.get(topic)?.[partition] ?? -1n;
    const start = position >= 0n ? position : (earliest.get(topic)?.[partition] ?? 0n);
    lags.set(partition, end > start ? end - start : 0n);
  }
  return lags;
}
