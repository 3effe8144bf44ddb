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
  /** Resolves once Kafka holds every record; rejects otherwise, or when Kafka took longer than the sink waits. */
  send(records: DeadLetter[]): Promise<void>;
}

/** The longest a batch waits for the dead-letter topic before it goes on without it. */
export const DEAD_LETTER_TIMEOUT_MS = 10_000;

/**
 * Publishes rejected records, unchanged, to the dead-letter topic, with the reason and where they
 * came from as headers. The applier sends them before its transaction commits the offsets past them,
 * so a crash in between sends them again rather than losing them: the dead-letter topic is
 * at-least-once, and a reader dedupes on (original topic, partition, offset) if it cares. When the
 * topic does not take them within `timeoutMs` (missing, unwritable, unreachable), the applier goes
 * on without it: totals.rejected_records keeps them, marked as not dead-lettered.
 */
export function createDeadLetterSink(
  publisher: Pick<EventPublisher, 'publish'>,
  deadLetterTopic: string,
  timeoutMs = DEAD_LETTER_TIMEOUT_MS,
): DeadLetterSink {
  return {
    send(records) {
      const rejectedAt = new Date().toISOString();
      const published = publisher.publish(
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
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the dead-letter topic ${deadLetterTopic} did not take the records within ${timeoutMs}ms`)), timeoutMs);
      });
      return Promise.race([published, timedOut]).finally(() => clearTimeout(timer));
    },
  };
}
