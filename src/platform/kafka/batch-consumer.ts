import { ListOffsetTimestamps, type Consumer } from '@platformatic/kafka';
import type { ConsumerSession } from './consumer-session.ts';
import { DeliveryLoop } from './delivery-loop.ts';
import { assignedPartitions, createMembership } from './group-member.ts';
import type { BatchResult, PartitionStall } from './partition-stalls.ts';
import type { IncomingRecord } from './records.ts';
import type { KafkaSettings } from './settings.ts';

export interface BatchConsumerOptions extends KafkaSettings {
  groupId: string;
  topic: string;
  /** Most records handed to one onBatch call (default 500). */
  maxBatchSize?: number;
  /**
   * Least time between two offset commits while batches keep coming (default 0: as soon as the
   * previous commit is answered). Commits never hold up the next batch.
   */
  commitIntervalMs?: number;
  /** How soon the group gives the partitions of a member that vanished to the others (default 10s). */
  sessionTimeoutMs?: number;
  /** How long start() keeps trying to join the group before it rejects (default 60s). */
  startTimeoutMs?: number;
  /** Told about every error the consumer recovers from (failed onBatch, lost connection, ...). */
  onError?: (error: unknown, context: string) => void;
  /**
   * Where the application stored its own progress (the next offset per partition of the topic
   * with that id), with what it applied. On every assignment each partition resumes from the
   * further of this and the group's committed offset.
   */
  storedOffsets?: (topicId: string, partitions: number[]) => Promise<Map<number, bigint>>;
  /** How long onBatch may keep failing for one batch before stalled() reports its partitions (default 10s). */
  stallAfterMs?: number;
}

export interface BatchConsumer {
  /** Joins the group and starts delivering batches; resolves once joined. Call it once. */
  start(): Promise<void>;
  /** Stops fetching, waits for an in-flight onBatch and commits what was applied, leaves the group. */
  close(): Promise<void>;
  /** Records not yet committed, per partition currently assigned to this member. */
  lag(): Promise<Map<number, bigint>>;
  /**
   * The partitions that do not move on: those onBatch stopped at a record (while assigned to this
   * member), and, once onBatch has failed for one batch for stallAfterMs, that batch's partitions
   * (reason "retrying").
   */
  stalled(): PartitionStall[];
}

/**
 * Consumes `topic` as member of `groupId`, handing records to `onBatch` in batches, one call at a
 * time. Offsets are committed only after onBatch resolved (while the next batch is applied), so
 * delivery is at-least-once: after a crash, a rebalance or a lost connection, records since the
 * last commit come again. A batch whose
 * onBatch throws is retried as it is (backoff 100ms..5s) until it succeeds or close() is called.
 * onBatch may stop partitions at a record (BatchResult.stalled): their records from there on are
 * not committed, and not delivered again until the partition is read anew (a new session, a
 * restart, another member). A new group starts from the earliest offset, or from storedOffsets.
 */
export function createBatchConsumer(
  options: BatchConsumerOptions,
  onBatch: (records: IncomingRecord[]) => Promise<BatchResult | void>,
): BatchConsumer {
  const stallAfterMs = options.stallAfterMs ?? 10_000;
  const maxBatchSize = options.maxBatchSize ?? 500;
  const closing = new AbortController();
  const membership = createMembership({ ...options, sessionTimeoutMs: options.sessionTimeoutMs ?? 10_000, maxBatchSize });
  const loop = new DeliveryLoop(
    membership,
    {
      topic: options.topic,
      maxBatchSize,
      commitIntervalMs: options.commitIntervalMs ?? 0,
      startTimeoutMs: options.startTimeoutMs ?? 60_000,
      report: options.onError ?? (() => {}),
      ...(options.storedOffsets ? { storedOffsets: options.storedOffsets } : {}),
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

    stalled() {
      const session = loop.session;
      const assigned = new Set(assignedPartitions(session?.member.consumer, options.topic));
      const stalls = (session?.stalls.list() ?? []).filter((stall) => assigned.has(stall.partition));
      const failing = loop.failingBatch;
      if (failing && Date.now() - failing.since >= stallAfterMs) {
        const seconds = Math.floor((Date.now() - failing.since) / 1000);
        const detail = `a batch has failed for ${seconds}s (${failing.attempts} attempts), retrying: ${errorMessage(failing.error)}`;
        for (const [partition, offset] of firstOffsets(failing.records)) {
          if (!stalls.some((stall) => stall.partition === partition)) stalls.push({ partition, offset, reason: 'retrying', detail });
        }
      }
      return stalls.sort((a, b) => a.partition - b.partition);
    },
  };
}

/** The lowest offset of `records` in each partition. */
function firstOffsets(records: readonly IncomingRecord[]): Map<number, bigint> {
  const first = new Map<number, bigint>();
  for (const { partition, offset } of records) {
    if (offset < (first.get(partition) ?? offset + 1n)) first.set(partition, offset);
  }
  return first;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Records not yet committed, per partition assigned to `consumer` (none without one). */
async function lagOf(consumer: Consumer | undefined, topic: string): Promise<Map<number, bigint>> {
  const partitions = assignedPartitions(consumer, topic);
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
