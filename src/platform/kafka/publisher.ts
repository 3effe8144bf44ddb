import { Producer, compatibilityPartitioner, type MessageToProduce } from '@platformatic/kafka';
import { backoffDelay, sleep } from '../backoff.ts';
import { blamePublishFailure } from './publish-failures.ts';
import { toKafkaMessage, type OutgoingRecord } from './records.ts';
import { baseClientOptions, DEFAULT_PUBLISH_TIMEOUT_MS, type KafkaSettings } from './settings.ts';
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
  /**
   * Attempts of one produce request after the first fails (default 5). Not 1: the library turns
   * an idempotent producer's 0 or 1 into "retry forever"; 0 is passed on as no retry at all.
   */
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
  /**
   * How long a publish may take from the call on, waiting for the sends ahead of it included, before
   * it fails with a PublishTimeoutError (default 20 s; KAFKA_PUBLISH_TIMEOUT_MS in the services).
   */
  publishTimeoutMs?: number;
}

export { DEFAULT_PUBLISH_TIMEOUT_MS } from './settings.ts';

/**
 * Kafka did not acknowledge a publish in time: whether its records were written is unknown. Like
 * any failure that is not the records' own, it blames Kafka (see publish-failures.ts), so the
 * records are to be sent again; a copy that was written after all is a duplicate, which the
 * consumer skips by event id.
 */
export class PublishTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`Kafka did not acknowledge the publish within ${timeoutMs} ms; whether it was written is unknown, and it is to be sent again`);
    this.name = 'PublishTimeoutError';
  }
}

interface Pending {
  messages: MessageToProduce[];
  bytes: number;
  /** Sent in a request of its own: it failed together with others, and each is to learn its own fate. */
  alone?: boolean;
  /** Date.now() after which it fails with a PublishTimeoutError. */
  deadline: number;
  /** Fails it once the deadline passed while it still waits to be sent. */
  timer: NodeJS.Timeout;
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
 *
 * Every publish settles within `publishTimeoutMs` of the call. The library's own retries and
 * timeouts do not bound a send well: an idempotent producer told 0 or 1 retries retries forever
 * (which is how sends were seen never to settle right after a partition leader was killed, and
 * when the login was refused), and each attempt may wait for its connection and its request
 * timeouts. With one send in flight at a time, a send that hangs would hold up every later publish
 * (and the relay's claim loop with it). So a send still unanswered when the earliest deadline of its
 * publishes passes is abandoned as failed, its producer closed and replaced like after any failed
 * send, and a publish whose deadline passes while it waits behind another fails then.
 */
export function createEventPublisher(settings: KafkaSettings, options: EventPublisherOptions = {}): EventPublisher {
  const retries = options.retries ?? 5;
  if (!Number.isInteger(retries) || retries < 0 || retries === 1) {
    throw new Error(`EventPublisher: retries must be 0 or a whole number of at least 2, got ${retries} (given 1, the library retries an idempotent producer's sends forever)`);
  }
  const publishTimeoutMs = options.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
  if (!Number.isInteger(publishTimeoutMs) || publishTimeoutMs <= 0) throw new Error(`EventPublisher: publishTimeoutMs must be a positive whole number, got ${publishTimeoutMs}`);
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
        // false is the library's "no retry" for an idempotent producer; it takes 0 for "forever".
        retries: retries === 0 ? false : retries,
        retryDelay: options.retryDelayMs ?? 500,
        partitioner: compatibilityPartitioner,
        autocreateTopics: false,
      }),
    ));

  const discardProducer = async () => {
    const old = producer;
    producer = null;
    if (!old) return;
    // Forced: nothing of ours is in flight but an abandoned send, and a broken connection must not
    // keep it open. Nor is the next send to wait on a producer that hangs in closing too.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CLOSE_WAIT_MS);
      old.close(true, () => {
        clearTimeout(timer);
        resolve();
      });
    });
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
      // Those whose deadline passed during the wait have failed already.
      const batch = takeBatch();
      if (batch.length === 0) continue;
      try {
        const deadline = Math.min(...batch.map((p) => p.deadline));
        await beforeDeadline(current().send({ messages: batch.flatMap((p) => p.messages) }), deadline, publishTimeoutMs);
        failedSends = 0;
        for (const p of batch) p.resolve();
      } catch (error) {
        failedSends += 1;
        await discardProducer();
        if (batch.length > 1 && blamePublishFailure(error) !== 'unavailable') {
          // Records that were written before the failure are written again: duplicates, which the
          // consumer absorbs, where failing the innocent publishes would count against their events.
          for (const p of batch) p.alone = true;
          pending.unshift(...batch);
          continue;
        }
        const reported = explainFailure(error, settings);
        for (const p of batch) p.reject(reported);
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
        const entry: Pending = {
          messages,
          bytes,
          deadline: Date.now() + publishTimeoutMs,
          timer: setTimeout(() => {
            // Still waiting to be sent; one in flight is failed by its send's deadline instead.
            const at = pending.indexOf(entry);
            if (at < 0) return;
            pending.splice(at, 1);
            entry.reject(new PublishTimeoutError(publishTimeoutMs));
          }, publishTimeoutMs),
          resolve: () => {
            clearTimeout(entry.timer);
            resolve();
          },
          reject: (error) => {
            clearTimeout(entry.timer);
            reject(error);
          },
        };
        pending.push(entry);
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

// How long a producer being discarded may take to close before the next one is made regardless.
const CLOSE_WAIT_MS = 5_000;

/** `work`, or a PublishTimeoutError at `deadline` (a Date.now() value) if it has not settled by then. */
function beforeDeadline<T>(work: Promise<T>, deadline: number, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PublishTimeoutError(timeoutMs)), Math.max(0, deadline - Date.now()));
  });
  // The abandoned send settles once its producer is closed; race() has handled its rejection.
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

/**
 * The library reports a refused login as a network error that it retried, with the refusal deep
 * among the causes; an operator reading the relay's log is to see it first.
 */
function explainFailure(error: unknown, settings: KafkaSettings): unknown {
  if (!findCause(error, 'PLT_KFK_AUTHENTICATION')) return error;
  const user = settings.security?.sasl?.username;
  return new Error(
    `Kafka refused the login${user ? ` of ${user}` : ''} (SASL authentication failed): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE`,
    { cause: error },
  );
}

/** The error, or one it aggregates or was caused by, that carries `code`. */
function findCause(error: unknown, code: string, depth = 0): unknown {
  if (typeof error !== 'object' || error === null || depth > 8) return undefined;
  if ((error as { code?: unknown }).code === code) return error;
  const { errors, cause } = error as { errors?: unknown; cause?: unknown };
  for (const nested of Array.isArray(errors) ? errors : []) {
    const found = findCause(nested, code, depth + 1);
    if (found) return found;
  }
  return findCause(cause, code, depth + 1);
}
