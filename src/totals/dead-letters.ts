import type { EventPublisher } from '../platform/kafka/publisher.ts';
import type { IncomingRecord } from '../platform/kafka/records.ts';

/** Headers a dead letter carries besides the original record's own. */
export const DEAD_LETTER_HEADERS = {
  reason: 'summa-dlq-reason',
  topic: 'summa-dlq-original-topic',
  partition: 'summa-dlq-original-partition',
  offset: 'summa-dlq-original-offset',
  rejectedAt: 'summa-dlq-rejected-at',
} as const;

/** A consumed record that is not a valid event, and why. */
export interface DeadLetter extends IncomingRecord {
  reason: string;
}

export interface DeadLetterSink {
  /** Resolves once Kafka holds every record; rejects otherwise (the batch is then retried). */
  send(records: DeadLetter[]): Promise<void>;
}

/**
 * Publishes rejected records, unchanged, to the dead-letter topic, with the reason and where they
 * came from as headers. The applier sends them before its transaction commits the offsets past them,
 * so a crash in between sends them again rather than losing them: the dead-letter topic is
 * at-least-once, and a reader dedupes on (original topic, partition, offset) if it cares.
 */
export function createDeadLetterSink(publisher: Pick<EventPublisher, 'publish'>, deadLetterTopic: string): DeadLetterSink {
  return {
    send(records) {
      const rejectedAt = new Date().toISOString();
      return publisher.publish(
        deadLetterTopic,
        records.map((record) => ({
          // The key keeps a poisoned request's records together; a record without one gets ''.
          key: record.key ?? '',
          value: record.value,
          headers: {
            ...record.headers,
            [DEAD_LETTER_HEADERS.reason]: record.reason,
            [DEAD_LETTER_HEADERS.topic]: record.topic,
            [DEAD_LETTER_HEADERS.partition]: String(record.partition),
            [DEAD_LETTER_HEADERS.offset]: record.offset.toString(),
            [DEAD_LETTER_HEADERS.rejectedAt]: rejectedAt,
          },
        })),
      );
    },
  };
}
