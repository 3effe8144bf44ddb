import { decodeSumAccepted, MalformedEventError, NewerEventVersionError, type SumAccepted } from '../events/sum-accepted.ts';
import type { BatchResult, PartitionStall } from '../platform/kafka/partition-stalls.ts';
import type { IncomingRecord } from '../platform/kafka/records.ts';
import type { Logger } from '../platform/logger.ts';
import { endSpans, startConsumerSpan } from '../platform/tracing/messaging-spans.ts';
import { describeDatabaseError, isPermanentDatabaseError } from './database-errors.ts';
import type { DeadLetter, DeadLetterSink } from './dead-letters.ts';
import type { TotalsMetrics } from './metrics.ts';
import type { BatchOutcome, EventAtOffset, PartitionOffset, RejectedRecord, TotalsStore } from './totals-store.ts';

/** The metric label of a partition stopped at an event of a newer version. */
export const NEWER_EVENT_VERSION = 'newer_event_version';

export interface BatchApplierParts {
  store: Pick<TotalsStore, 'applyBatch' | 'findRefused'>;
  groupId: string;
  logger: Logger;
  metrics: TotalsMetrics;
  /** Where rejected records go besides totals.rejected_records; none: only there. */
  deadLetters?: DeadLetterSink;
  /** Reads a record's value as an event (default: this release's decoder). */
  decode?: (value: Buffer) => SumAccepted;
}

/**
 * Turns a batch of consumed records into one store transaction.
 *
 * - A record that can never be an event (not JSON, another type, a missing or invalid field) is
 *   kept as rejected, with the reason, so that it neither blocks its partition nor vanishes: it
 *   goes to the dead-letter topic (when there is one and it takes it) and to
 *   totals.rejected_records.
 * - An event of a newer version is a valid sum this release cannot read: its partition stops there
 *   (the result says so) and goes on under a release that reads it.
 * - Events PostgreSQL refuses for their data are found by splitting the batch, and rejected like
 *   the first kind; the rest is applied. Any other database failure fails the batch, to be retried.
 */
export function createBatchApplier(parts: BatchApplierParts) {
  const { store, groupId, logger, metrics, deadLetters } = parts;
  const decode = parts.decode ?? decodeSumAccepted;

  /** Sends to the dead-letter topic; whether it took them (null without one). Never throws. */
  async function deadLetter(records: DeadLetter[]): Promise<boolean | null> {
    if (!deadLetters || records.length === 0) return null;
    try {
      await deadLetters.send(records);
      return true;
    } catch (error) {
      // Valid records must not wait behind a dead-letter topic that is missing or refuses writes:
      // the records are kept in totals.rejected_records all the same.
      metrics.deadLetterFailures.inc(records.length);
      logger.error(
        { err: error, records: records.map(({ partition, offset }) => ({ partition, offset: offset.toString() })) },
        `the dead-letter topic did not take ${records.length} rejected record(s); they are kept in totals.rejected_records only`,
      );
      return false;
    }
  }

  async function reject(records: DeadLetter[]): Promise<RejectedRecord[]> {
    // Before the commit that moves the offsets past them: a crash in between re-sends, never loses.
    const deadLettered = await deadLetter(records);
    return records.map((record) => ({ ...record, deadLettered }));
  }

  return async (records: IncomingRecord[]): Promise<BatchResult> => {
    metrics.consumed.inc(records.length);
    const { events, malformed, stalled } = sortOut(records, decode);
    for (const stall of stalled) {
      logger.error(
        { partition: stall.partition, offset: stall.offset.toString(), reason: stall.reason },
        `stopped applying partition ${stall.partition} at offset ${stall.offset}: ${stall.detail}`,
      );
    }
    const held = (record: IncomingRecord) => stalled.some((stall) => stall.partition === record.partition && record.offset >= stall.offset);
    const taken = records.filter((record) => !held(record));
    const offsets = nextOffsets(taken);
    if (taken.length === 0) return { stalled };

    let rejected = await reject(malformed);
    // An apply span for each record that carries a traceparent, child of the relay's publish span.
    const spans = taken.map((record) => startConsumerSpan(record, record.headers));
    let outcome: BatchOutcome;
    try {
      try {
        outcome = await store.applyBatch(groupId, [...events.keys()], rejected, offsets);
      } catch (error) {
        if (!isPermanentDatabaseError(error)) throw error;
        const refused = await store.findRefused([...events.keys()]);
        // Not one event's doing (the rejected records' or the offsets'?): retried like any failure.
        if (refused.size === 0) throw error;
        const quarantined = await reject(
          [...refused].map(([event, refusal]) => ({ ...events.get(event)!, reason: `PostgreSQL refused it: ${describeDatabaseError(refusal)}` })),
        );
        const accepted = [...events.keys()].filter((event) => !refused.has(event));
        outcome = await store.applyBatch(groupId, accepted, [...rejected, ...quarantined], offsets);
        rejected = [...rejected, ...quarantined];
      }
    } catch (error) {
      endSpans(spans, error);
      throw error;
    }
    endSpans(spans);

    const now = Date.now();
    metrics.applied.inc(outcome.applied);
    metrics.duplicates.inc(outcome.duplicates);
    if (outcome.tooOld.length > 0) {
      metrics.quarantined.inc(outcome.tooOld.length);
      for (const { event, partition, offset } of outcome.tooOld) {
        logger.error(
          { eventId: event.eventId, requestId: event.requestId, partition, offset: offset.toString(), acceptedAt: event.acceptedAt, horizon: outcome.horizon },
          'quarantined an event older than the dedup window: it may have been applied before, so it is not applied again; `summa dlq` shows it',
        );
      }
    }
    for (const acceptedAt of outcome.acceptedAtMs) metrics.endToEndSeconds.observe(Math.max(0, now - acceptedAt) / 1000);
    if (rejected.length > 0) {
      metrics.rejected.inc(rejected.length);
      for (const record of rejected) {
        logger.warn(
          { topic: record.topic, partition: record.partition, offset: record.offset.toString(), reason: record.reason, deadLettered: record.deadLettered },
          'rejected a record that is not a valid event',
        );
      }
    }
    return { stalled };
  };
}

interface SortedOut {
  /** The events read, each with the record it came from. */
  events: Map<EventAtOffset, IncomingRecord>;
  malformed: DeadLetter[];
  /** The first record of each partition that holds an event of a newer version. */
  stalled: PartitionStall[];
}

/** Decodes every record, up to the first of its partition that a newer release must read. */
function sortOut(records: IncomingRecord[], decode: (value: Buffer) => SumAccepted): SortedOut {
  const decoded: { record: IncomingRecord; event?: SumAccepted; malformed?: string }[] = [];
  const stalls = new Map<number, PartitionStall>();
  for (const record of records) {
    try {
      decoded.push({ record, event: decode(record.value) });
    } catch (error) {
      if (error instanceof NewerEventVersionError) {
        const known = stalls.get(record.partition);
        if (!known || record.offset < known.offset) {
          stalls.set(record.partition, {
            partition: record.partition,
            offset: record.offset,
            reason: NEWER_EVENT_VERSION,
            detail: `${error.message}; a release that reads it will apply it`,
          });
        }
      } else if (error instanceof MalformedEventError) {
        decoded.push({ record, malformed: error.message });
      } else {
        throw error;
      }
    }
  }
  const events = new Map<EventAtOffset, IncomingRecord>();
  const malformed: DeadLetter[] = [];
  for (const { record, event, malformed: reason } of decoded) {
    const stall = stalls.get(record.partition);
    if (stall && record.offset >= stall.offset) continue;
    if (event) events.set({ event, partition: record.partition, offset: record.offset, source: record }, record);
    else malformed.push({ ...record, reason: reason! });
  }
  return { events, malformed, stalled: [...stalls.values()] };
}

/** The offset after the last of `records`, per topic and partition. */
function nextOffsets(records: IncomingRecord[]): PartitionOffset[] {
  const next = new Map<string, PartitionOffset>();
  for (const record of records) {
    const key = `${record.topic}/${record.partition}`;
    const known = next.get(key);
    if (!known || known.nextOffset <= record.offset) {
      next.set(key, { topic: record.topic, topicId: record.topicId, partition: record.partition, nextOffset: record.offset + 1n });
    }
  }
  return [...next.values()];
}
