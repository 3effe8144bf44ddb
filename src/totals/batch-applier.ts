import { decodeSumAccepted, MalformedEventError } from '../events/sum-accepted.ts';
import type { IncomingRecord } from '../platform/kafka/records.ts';
import type { Logger } from '../platform/logger.ts';
import { endSpans, startConsumerSpan } from '../platform/tracing/messaging-spans.ts';
import type { DeadLetter, DeadLetterSink } from './dead-letters.ts';
import type { TotalsMetrics } from './metrics.ts';
import type { EventAtOffset, PartitionOffset, TotalsStore } from './totals-store.ts';

/**
 * Turns a batch of consumed records into one store transaction. A record that is not a readable
 * event is kept as rejected, with the reason, so it neither blocks its partition nor vanishes: it
 * goes to the dead-letter topic (when a sink is given) and to totals.rejected_records.
 */
export function createBatchApplier(
  store: TotalsStore,
  groupId: string,
  logger: Logger,
  metrics: TotalsMetrics,
  deadLetters?: DeadLetterSink,
) {
  return async (records: IncomingRecord[]): Promise<void> => {
    const events: EventAtOffset[] = [];
    const rejected: DeadLetter[] = [];
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
    // Before the commit that moves the offsets past them: a crash in between re-sends, never loses.
    if (rejected.length > 0 && deadLetters) await deadLetters.send(rejected);
    metrics.consumed.inc(records.length);
    // An apply span for each record that carries a traceparent, child of the relay's publish span.
    const spans = records.map((record) => startConsumerSpan(record, record.headers));
    let outcome: Awaited<ReturnType<TotalsStore['applyBatch']>>;
    try {
      outcome = await store.applyBatch(groupId, events, rejected, [...nextOffsets.values()]);
    } catch (error) {
      endSpans(spans, error);
      throw error;
    }
    endSpans(spans);

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
