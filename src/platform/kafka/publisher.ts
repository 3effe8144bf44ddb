import { Producer, compatibilityPartitioner, type MessageToProduce } from '@platformatic/kafka';
import { backoffDelay, sleep } from '../backoff.ts';
import { blamePublishFailure } from './publish-failures.ts';
import { toKafkaMessage, type OutgoingRecord } from './records.ts';
import { baseClientOptions, type KafkaSettings } from './settings.ts';
import { guardUnknownBrokers } from './unknown-broker.ts';

export interface EventPublisher {
  /**
   * Resolves once Kafka acknowledged every record (idempotent producer, acks=all); rejects
   * otherwise, in which case any subset of the records may have been written.
   */
  publish(topic: string, records: OutgoingRecord[]): Promise<void>;
  /** Waits for publishes already asked for, then closes the producer. */
  close(): Promise<void>;
}

export interface EventPublisherOptions {
  /** Attempts of one produce request after the first fails (default 5). */
  retries?: number;
  /** Pause between those attempts (default 500ms). */
  retryDelayMs?: number;
  /**
   * Pause before the producer that replaces a failed one: this long after the first failed send,
   * doubling with each further one up to `maxProducerBackoffMs`, and back to none after a success
   * (defaults 100 ms and 5 s).
   */
  minProducerBackoffMs?: number;
  maxProducerBackoffMs?: number;
}

interface Pending {
  messages: MessageToProduce[];
  bytes: number;
  /** Sent in a request of its own: it failed together with others, and each is to learn its own fate. */
  alone?: boolean;
  resolve: () => void;
  reject: (error: unknown) => void;
}

// Publishes waiting together are sent as one request up to about this size; Kafka's default
// message.max.bytes (1 MiB) applies to each partition's batch.
const MAX_COALESCED_BYTES = 512 * 1024;

/**
 * Publishes through one idempotent producer.
 *
 * Two rules keep @platformatic/kafka 1.x's idempotence from losing records:
 * - One send in flight at a time. The library stamps a batch with the partition's next sequence
 *   number when the request is built and advances it only when the response arrives, so two
 *   concurrent sends to one partition carry the same sequence, and the broker acknowledges the
 *   second as a "duplicate" of the first without writing it. Publishes that arrive meanwhile are
 *   coalesced into the next request instead.
 * - A new producer (so a new producer id) after any failed send. The failed request may have been
 *   written while its sequence was not advanced: the next batch of the same size would be taken for
 *   a retry of it and dropped.
 *
 * A request that carried several publishes and failed for the sake of some record in it (its topic
 * does not exist, it is too large) is sent again one publish per request, so that one caller's bad
 * record does not fail the others coalesced with it. A failure that is Kafka's (an outage) fails
 * them all at once.
 *
 * Each new producer asks the broker for a producer id (InitProducerId), and the broker keeps state
 * for every id that wrote. So the producer that replaces a failed one is created only after a
 * backoff that grows with consecutive failed sends: during a long outage the callers' retries wait
 * here instead of turning into a stream of new producer ids.
 */
export function createEventPublisher(settings: KafkaSettings, options: EventPublisherOptions = {}): EventPublisher {
  let producer: Producer | null = null;
  let pending: Pending[] = [];
  let draining: Promise<void> | null = null;
  let closed = false;
  /** Sends failed in a row; the next producer waits a backoff that grows with it. */
  let failedSends = 0;
  const closing = new AbortController();

  const current = () =>
    (producer ??= guardUnknownBrokers(
      new Producer({
        ...baseClientOptions(settings),
        idempotent: true,
        acks: -1,
        retries: options.retries ?? 5,
        retryDelay: options.retryDelayMs ?? 500,
        partitioner: compatibilityPartitioner,
        autocreateTopics: false,
      }),
    ));

  const discardProducer = async () => {
    const old = producer;
    producer = null;
    // Forced: nothing of ours is in flight, and a broken connection must not keep it open.
    await new Promise<void>((resolve) => (old ? old.close(true, () => resolve()) : resolve()));
  };

  const takeBatch = (): Pending[] => {
    let bytes = 0;
    let count = 0;
    if (pending[0]?.alone) return pending.splice(0, 1);
    while (count < pending.length && !pending[count]!.alone && (count === 0 || bytes + pending[count]!.bytes <= MAX_COALESCED_BYTES)) {
      bytes += pending[count]!.bytes;
      count++;
    }
    return pending.splice(0, count);
  };

  const drain = async () => {
    while (pending.length > 0) {
      if (producer === null && failedSends > 0) {
        // Publishes that arrive meanwhile join the next batch. close() cuts the wait short.
        await sleep(backoffDelay(failedSends - 1, options.minProducerBackoffMs ?? 100, options.maxProducerBackoffMs ?? 5_000), closing.signal);
      }
      const batch = takeBatch();
      try {
        await current().send({ messages: batch.flatMap((p) => p.messages) });
        failedSends = 0;
        for (const p of batch) p.resolve();
      } catch (error) {
        failedSends += 1;
        await discardProducer();
        if (batch.length > 1 && blamePublishFailure(error) !== 'unavailable') {
          // Records that were written before the failure are written again: duplicates, which the
          // consumer absorbs, where failing the innocent publishes would count against their events.
          pending.unshift(...batch.map((p) => ({ ...p, alone: true })));
          continue;
        }
        for (const p of batch) p.reject(error);
      }
    }
    draining = null;
  };

  return {
    publish(topic, records) {
      if (closed) return Promise.reject(new Error('EventPublisher is closed'));
      if (records.length === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const messages = records.map((record) => toKafkaMessage(topic, record));
        const bytes = messages.reduce((sum, m) => sum + (m.key?.length ?? 0) + (m.value?.length ?? 0) + 64, 0);
        pending.push({ messages, bytes, resolve, reject });
        draining ??= drain();
      });
    },
    async close() {
      closed = true;
      closing.abort();
      await draining;
      await discardProducer();
    },
  };
}
