import { MessagesStreamFallbackModes, MessagesStreamModes, type Message, type MessagesStream } from '@platformatic/kafka';
import type { Member } from './group-member.ts';
import { PartitionStalls } from './partition-stalls.ts';
import { fromKafkaMessage, type IncomingRecord } from './records.ts';

type KafkaMessage = Message<Buffer, Buffer, Buffer, Buffer>;
type KafkaStream = MessagesStream<Buffer, Buffer, Buffer, Buffer>;

export interface SessionOptions {
  topic: string;
  /** Most records one nextBatch() returns. */
  maxBatchSize: number;
  /** How long a batch may wait for more records once it has one. */
  maxWaitMs: number;
}

/** One message stream of a member; replaced when it fails. */
export class ConsumerSession {
  /** Set once the stream or the membership broke. */
  private broken: Error | null = null;
  /** Wakes whoever waits for records (new data, failure, close). */
  private wake: (() => void) | null = null;
  /** Highest offset committed per partition by this session, to never move a commit backwards. */
  private readonly committed = new Map<number, bigint>();
  /** The partitions onBatch stopped at a record, for the rest of this session. */
  readonly stalls = new PartitionStalls();

  /** Starts reading `options.topic` through `member`, from the group's committed offsets. */
  static async open(member: Member, options: SessionOptions): Promise<ConsumerSession> {
    let stream: KafkaStream;
    try {
      // (Re)joins the group: the topic was untracked when the previous stream closed.
      stream = await member.consumer.consume({
        topics: [options.topic],
        mode: MessagesStreamModes.COMMITTED,
        fallbackMode: MessagesStreamFallbackModes.EARLIEST,
        autocommit: false,
      });
    } catch (error) {
      // consume() tracked the topic before the join failed; untracking it makes the next consume()
      // join again (under the same member id) instead of streaming without a membership.
      member.consumer.topics.untrack(options.topic);
      throw error;
    }
    return new ConsumerSession(member, stream, options);
  }

  private constructor(
    readonly member: Member,
    private readonly stream: KafkaStream,
    private readonly options: SessionOptions,
  ) {
    member.onBreak = this.fail;
    stream.on('error', this.fail);
    stream.on('close', this.onClose);
    // A 'readable' listener must stay attached for the whole session: with none, Node sets
    // readableFlowing back to null and the library stops fetching ("nobody is consuming").
    stream.on('readable', this.onReadable);
  }

  /** Why the stream or the membership broke; null while the session works. */
  get failure(): Error | null {
    return this.broken;
  }

  private readonly fail = (error: Error): void => {
    this.broken ??= error;
    this.wake?.();
  };

  private readonly onReadable = (): void => this.wake?.();

  private readonly onClose = (): void => this.fail(new Error('Kafka message stream closed'));

  /**
   * Up to maxBatchSize records, or what arrived within maxWaitMs of the first; [] on close/failure.
   * Records a stall holds back are left out.
   */
  async nextBatch(closing: AbortSignal): Promise<IncomingRecord[]> {
    const batch: IncomingRecord[] = [];
    let deadline = 0;
    while (batch.length < this.options.maxBatchSize) {
      if (closing.aborted || this.broken) return [];
      const message = this.stream.read() as KafkaMessage | null;
      if (message !== null) {
        const record = fromKafkaMessage(message);
        if (this.stalls.holds(record)) continue;
        if (batch.length === 0) deadline = Date.now() + this.options.maxWaitMs;
        batch.push(record);
        continue;
      }
      const remaining = batch.length === 0 ? Infinity : deadline - Date.now();
      if (remaining <= 0) break;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          closing.removeEventListener('abort', done);
          this.wake = null;
          resolve();
        };
        const timer = remaining === Infinity ? undefined : setTimeout(done, remaining);
        this.wake = done;
        closing.addEventListener('abort', done, { once: true });
      });
    }
    return batch;
  }

  /** Commits the offsets after `records` (which this session delivered). */
  async commit(records: IncomingRecord[]): Promise<void> {
    const next = new Map<number, bigint>();
    for (const { partition, offset } of records) {
      if (offset + 1n > (next.get(partition) ?? -1n)) next.set(partition, offset + 1n);
    }
    // After a rebalance the stream may hand out again records this session already committed past.
    const offsets = [...next]
      .filter(([partition, offset]) => offset > (this.committed.get(partition) ?? -1n))
      .map(([partition, offset]) => ({ topic: this.options.topic, partition, offset, leaderEpoch: -1 }));
    if (offsets.length === 0) return;
    await this.member.consumer.commit({ offsets });
    for (const { partition, offset } of offsets) this.committed.set(partition, offset);
  }

  /** Closes the stream; the member stays, for the next session. */
  async close(): Promise<void> {
    this.member.onBreak = null;
    this.stream.removeListener('close', this.onClose);
    this.stream.removeListener('readable', this.onReadable);
    await this.stream.close().catch(() => {});
  }
}
