import {
  Consumer,
  ListOffsetTimestamps,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
  type Message,
  type MessagesStream,
} from '@platformatic/kafka';
import { backoffDelay, sleep } from '../backoff.ts';
import { fromKafkaMessage, type IncomingRecord } from './records.ts';
import { baseClientOptions, type KafkaSettings } from './settings.ts';

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

type KafkaMessage = Message<Buffer, Buffer, Buffer, Buffer>;

/** Our membership in the group. Kept across stream failures so that we rejoin under the same
 * member id: a fresh member would wait for the old one's session timeout after a broker restart. */
interface Member {
  consumer: Consumer;
  /** Set when the library gave up on the membership (it emitted 'error'); then it is replaced. */
  broken: Error | null;
  /** The session currently reading through this member, told when the member breaks. */
  session: Session | null;
}

/** One message stream of a member; replaced when it fails. */
interface Session {
  member: Member;
  stream: MessagesStream<Buffer, Buffer, Buffer, Buffer>;
  /** Set once the stream or the membership broke. */
  failure: Error | null;
  /** Wakes whoever waits for records (new data, failure, close). */
  wake: (() => void) | null;
  /** Highest offset committed per partition by this session, to never move a commit backwards. */
  committed: Map<number, bigint>;
  fail(error: Error): void;
  onReadable(): void;
  onClose(): void;
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
  const maxWaitMs = options.maxWaitMs ?? 20;
  const sessionTimeout = options.sessionTimeoutMs ?? 10_000;
  const report = options.onError ?? (() => {});
  const closing = new AbortController();
  let member: Member | null = null;
  let session: Session | null = null;
  let starting: Promise<Session> | null = null;
  let running: Promise<void> | null = null;

  function createMember(): Member {
    const consumer = new Consumer({
      ...baseClientOptions(options),
      groupId: options.groupId,
      autocommit: false,
      sessionTimeout,
      rebalanceTimeout: sessionTimeout,
      heartbeatInterval: Math.min(1_000, Math.floor(sessionTimeout / 3)),
      // An idle fetch returns after this long; it bounds how quickly close() gets through.
      maxWaitTime: 500,
      highWaterMark: Math.max(1024, 2 * maxBatchSize),
      retries: 3,
      retryDelay: 500,
    });
    const created: Member = { consumer, broken: null, session: null };
    // Emitted when rejoining the group failed for good; without a listener it would crash the process.
    consumer.on('error', (error: Error) => {
      created.broken ??= error;
      created.session?.fail(error);
    });
    return created;
  }

  async function openSession(): Promise<Session> {
    if (member?.broken) {
      await disposeConsumer(member.consumer);
      member = null;
    }
    const current = (member ??= createMember());
    let stream: Session['stream'];
    try {
      // (Re)joins the group: the topic was untracked when the previous stream closed.
      stream = await current.consumer.consume({
        topics: [options.topic],
        mode: MessagesStreamModes.COMMITTED,
        fallbackMode: MessagesStreamFallbackModes.EARLIEST,
        autocommit: false,
      });
    } catch (error) {
      // consume() tracked the topic before the join failed; untracking it makes the next consume()
      // join again (under the same member id) instead of streaming without a membership.
      current.consumer.topics.untrack(options.topic);
      throw error;
    }
    const opened: Session = {
      member: current,
      stream,
      failure: null,
      wake: null,
      committed: new Map(),
      fail(error) {
        opened.failure ??= error;
        opened.wake?.();
      },
      onReadable: () => opened.wake?.(),
      onClose: () => opened.fail(new Error('Kafka message stream closed')),
    };
    current.session = opened;
    stream.on('error', opened.fail);
    stream.on('close', opened.onClose);
    // A 'readable' listener must stay attached for the whole session: with none, Node sets
    // readableFlowing back to null and the library stops fetching ("nobody is consuming").
    stream.on('readable', opened.onReadable);
    return opened;
  }

  async function closeSession(closed: Session): Promise<void> {
    closed.member.session = null;
    closed.stream.removeListener('close', closed.onClose);
    closed.stream.removeListener('readable', closed.onReadable);
    await closed.stream.close().catch(() => {});
  }

  async function leaveGroup(): Promise<void> {
    const leaving = member;
    member = null;
    if (leaving) await disposeConsumer(leaving.consumer);
  }

  /** Up to maxBatchSize records, or what arrived within maxWaitMs of the first; [] on close/failure. */
  async function nextBatch(current: Session): Promise<KafkaMessage[]> {
    const batch: KafkaMessage[] = [];
    let deadline = 0;
    while (batch.length < maxBatchSize) {
      if (closing.signal.aborted || current.failure) return [];
      const message = current.stream.read() as KafkaMessage | null;
      if (message !== null) {
        if (batch.length === 0) deadline = Date.now() + maxWaitMs;
        batch.push(message);
        continue;
      }
      const remaining = batch.length === 0 ? Infinity : deadline - Date.now();
      if (remaining <= 0) break;
      await new Promise<void>((resolve) => {
        const timer = remaining === Infinity ? undefined : setTimeout(done, remaining);
        function done() {
          clearTimeout(timer);
          closing.signal.removeEventListener('abort', done);
          current.wake = null;
          resolve();
        }
        current.wake = done;
        closing.signal.addEventListener('abort', done, { once: true });
      });
    }
    return batch;
  }

  /** Calls onBatch until it succeeds; false if close() came first. */
  async function deliver(records: IncomingRecord[]): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await onBatch(records);
        return true;
      } catch (error) {
        report(error, `onBatch failed for ${records.length} records (attempt ${attempt + 1}); retrying`);
      }
      await sleep(backoffDelay(attempt), closing.signal);
      if (closing.signal.aborted) return false;
    }
  }

  async function commit(current: Session, records: IncomingRecord[]): Promise<void> {
    const next = new Map<number, bigint>();
    for (const { partition, offset } of records) {
      if (offset + 1n > (next.get(partition) ?? -1n)) next.set(partition, offset + 1n);
    }
    // After a rebalance the stream may hand out again records this session already committed past.
    const offsets = [...next]
      .filter(([partition, offset]) => offset > (current.committed.get(partition) ?? -1n))
      .map(([partition, offset]) => ({ topic: options.topic, partition, offset, leaderEpoch: -1 }));
    if (offsets.length === 0) return;
    await current.member.consumer.commit({ offsets });
    for (const { partition, offset } of offsets) current.committed.set(partition, offset);
  }

  /** Delivers and commits batches until close() or until the session breaks (returns its error). */
  async function pump(current: Session): Promise<Error | null> {
    while (!closing.signal.aborted) {
      const messages = await nextBatch(current);
      if (current.failure) return current.failure;
      if (messages.length === 0) continue;
      const records = messages.map(fromKafkaMessage);
      if (!(await deliver(records))) return null;
      try {
        await commit(current, records);
      } catch (error) {
        // Processed but not committed: a new session re-reads from the last commit (at-least-once).
        return toError(error);
      }
    }
    return null;
  }

  async function run(first: Session): Promise<void> {
    let current: Session | null = first;
    let attempt = 0;
    while (!closing.signal.aborted) {
      if (!current) {
        try {
          current = await openSession();
        } catch (error) {
          report(error, 'joining the consumer group failed; retrying');
          await sleep(reconnectDelay(attempt++), closing.signal);
          continue;
        }
      }
      session = current;
      const failure = await pump(current);
      session = null;
      await closeSession(current);
      current = null;
      if (failure) {
        report(failure, 'consumer session failed; reconnecting');
        await sleep(reconnectDelay(attempt++), closing.signal);
      } else {
        attempt = 0;
      }
    }
    await leaveGroup();
  }

  async function join(): Promise<Session> {
    const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
    for (let attempt = 0; ; attempt++) {
      if (closing.signal.aborted) throw new Error('BatchConsumer closed before it started');
      try {
        const first = await openSession();
        if (!closing.signal.aborted) return first;
        await closeSession(first);
        await leaveGroup();
      } catch (error) {
        if (Date.now() >= deadline) {
          await leaveGroup();
          throw error;
        }
        report(error, 'joining the consumer group failed; retrying');
        await sleep(reconnectDelay(attempt), closing.signal);
      }
    }
  }

  return {
    async start() {
      if (starting) throw new Error('BatchConsumer already started');
      starting = join();
      running = run(await starting);
    },

    async close() {
      closing.abort();
      await starting?.catch(() => {});
      await running;
    },

    async lag() {
      const current = session;
      const consumer = current?.member.consumer;
      const partitions = consumer?.assignments?.find((a) => a.topic === options.topic)?.partitions ?? [];
      const lags = new Map<number, bigint>();
      if (!consumer || partitions.length === 0) return lags;
      const topics = [options.topic];
      const [latest, earliest, committed] = await Promise.all([
        consumer.listOffsets({ topics }),
        consumer.listOffsets({ topics, timestamp: ListOffsetTimestamps.EARLIEST }),
        consumer.listCommittedOffsets({ topics: [{ topic: options.topic, partitions }] }),
      ]);
      for (const partition of partitions) {
        const end = latest.get(options.topic)?.[partition] ?? 0n;
        const position = committed.get(options.topic)?.[partition] ?? -1n;
        const start = position >= 0n ? position : (earliest.get(options.topic)?.[partition] ?? 0n);
        lags.set(partition, end > start ? end - start : 0n);
      }
      return lags;
    },
  };
}

/** Closes a consumer (leaving the group when the broker is reachable) and always its sockets. */
async function disposeConsumer(consumer: Consumer): Promise<void> {
  try {
    // close(true) closes the streams first; the typings pick the callback overload for a literal.
    await new Promise<void>((resolve, reject) => consumer.close(true, (error) => (error ? reject(error) : resolve())));
  } catch {
    // Leaving the group failed (broker gone?): the group drops us after the session timeout.
    await consumer.connections.close().catch(() => {});
  }
}

// Each attempt already spends a few seconds in the library's own retries; keep the pause short so a
// restarted broker is picked up quickly.
function reconnectDelay(attempt: number): number {
  return backoffDelay(attempt, 100, 1_000);
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
