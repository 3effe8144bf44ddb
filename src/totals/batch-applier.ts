import { decodeSumAccepted, MalformedEventError } from '../events/sum-accepted.ts';
import type { Logger } from '../platform/logger.ts';
import type { TotalsMetrics } from './metrics.ts';
import type { EventAtOffset, PartitionOffset, RejectedRecord, TotalsStore } from './totals-store.ts';

/** What the applier needs of a consumed Kafka record. */
export interface ConsumedRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: string | null;
  value: Buffer;
}

/**
 * Turns a batch of consumed records into one store transaction. A record that is not a readable
 * event is kept as rejected, with the reason, so it neither blocks its partition nor vanishes.
 */
export function createBatchApplier(store: TotalsStore, groupId: string, logger: Logger, metrics: TotalsMetrics) {
  return async (records: ConsumedRecord[]): Promise<void> => {
    const events: EventAtOffset[] = [];
    const rejected: RejectedRecord[] = [];
    const nextOffsets = new Map<string, PartitionOffset>();
    for (const record of records) {
      try {
        events.push({ event: decodeSumAccepted(record.value), partition: record.partition, offset: record.offset });
      } catch (error) {
        if (!(error instanceof MalformedEventError)) throw error;
        rejected.push({ ...record, reason: error.message });
      }
      const key = `${record.topic}/${record.partition}`;
      const known = nextOffsets.get(key);
      if (!known || known.nextOffset <= record.offset) {
        nextOffsets.set(key, { topic: record.topic, partition: record.partition, nextOffset: record.offset + 1n });
      }
    }
    const outcome = await store.applyBatch(groupId, events, rejected, [...nextOffsets.values()]);

    const now = Date.now();
    metrics.applied.inc(outcome.applied);
    metrics.duplicates.inc(outcome.duplicates);
    for (const acceptedAt of outcome.acceptedAtMs) metrics.endToEndSeconds.observe(Math.max(0, now - acceptedAt) / 1000);
    if (rejected.length > 0) {
      metrics.rejected.inc(rejected.length);
      for (const record of rejected) {
        logger.warn({ topic: record.topic, partition: record.partition, offset: record.offset.toString(), reason: record.reason }, 'rejected a record that is not a valid event');
      }
    }
  };
}
