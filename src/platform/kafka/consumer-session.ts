import { MessagesStreamFallbackModes, MessagesStreamModes, type Message, type MessagesStream } from '@platformatic/kafka';
import { backoffDelay, sleep } from '../backoff.ts';
import { assignedPartitions, type Member } from './group-member.ts';
import { PartitionStalls } from './partition-stalls.ts';
import { fromKafkaMessage, type IncomingRecord } from './records.ts';

type KafkaMessage = Message<Buffer, Buffer, Buffer, Buffer>;
type KafkaStream = MessagesStream<Buffer, Buffer, Buffer, Buffer>;

export interface SessionOptions {
  topic: string;
  /** Most records one nextBatch() returns. */
  maxBatchSize: number;
  /**
   * Least time between two offset commits while batches keep coming; the offsets of the batches
   * applied meanwhile go in the next. 0: each batch's offsets are sent as soon as no commit is in
   * flight.
   */
  commitIntervalMs: number;
  /**
   * The next offset to read per partition as the application stored it with what it applied,
   * for the topic with this id. Read on every assignment: see ConsumerSession.seekToStoredOffsets.
   */
  storedOffsets?: (topicId: string, partitions: number[]) => Promise<Map<number, bigint>>;
  /** Told about every error the session recovers from. */
  report: (error: unknown, context: string) => void;
}

/** One message stream of a member; replaced when it fails. */
/** The group's coordinator is elsewhere now. */
const STALE_COORDINATOR_ERRORS = ['NOT_COORDINATOR', 'COORDINATOR_NOT_AVAILABLE'];

/**
 * Whether a failed join was sent to a broker that no longer coordinates the group. @platformatic/kafka
 * (1.35) looks the coordinator up once per consumer and keeps it for the consumer's life, so such a
 * member would ask the same broker forever (seen when the coordinator of a 3-node cluster was
 * killed: every totals consumer stuck on "This is not the correct coordinator"). A member broken
 * for it is replaced by a new consumer, which looks the coordinator up again.
 */
export function staleCoordinator(error: unknown): boolean {
  const find = (error as { findBy?: (property: string, value: unknown) => unknown } | null)?.findBy;
  if (typeof find !== 'function') return false;
  return STALE_COORDINATOR_ERRORS.some((apiId) => find.call(error, 'apiId', apiId) != null);
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

export class ConsumerSession {
  /** Set once the stream or the membership broke. */
  private broken: Error | null = null;
  /** Wakes whoever waits for records (new data, failure, close). */
  private wake: (() => void) | null = null;
  /** Highest offset committed per partition by this session, to never move a commit backwards. */
  private readonly committed = new Map<number, bigint>();
  /** Offsets after the records applied and not yet sent to Kafka, per partition. */
  private readonly uncommitted = new Map<number, bigint>();
  /** The commits being sent (one at a time), until no offset is left to send. */
  private committing: Promise<void> | null = null;
  private lastCommitAt = 0;
  /** Cuts the wait between commits short: the session is ending. */
  private readonly flushing = new AbortController();
  /** The partitions onBatch stopped at a record, for the rest of this session. */
  readonly stalls = new PartitionStalls();
  /** Counts the seeks started; a seek superseded by a newer assignment leaves the stream to it. */
  private seeks = 0;
  private readonly closed = new AbortController();

  /**
   * Starts reading `options.topic` through `member`, from the group's committed offsets, or from
   * the offsets the application stored where those are further.
   */
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
      if (staleCoordinator(error)) member.broken ??= toError(error);
      throw error;
    }
    let topicId: string | undefined;
    try {
      // Known already: consume() asked for the topic's metadata.
      topicId = (await member.consumer.metadata({ topics: [options.topic] })).topics.get(options.topic)?.id;
      if (!topicId) throw new Error(`Kafka has no id for topic ${options.topic}`);
    } catch (error) {
      await stream.close().catch(() => {});
      throw error;
    }
    return new ConsumerSession(member, stream, topicId, options);
  }

  private constructor(
    readonly member: Member,
    private readonly stream: KafkaStream,
    private readonly topicId: string,
    private readonly options: SessionOptions,
  ) {
    member.onBreak = this.fail;
    stream.on('error', this.fail);
    stream.on('close', this.onClose);
    // A 'readable' listener must stay attached for the whole session: with none, Node sets
    // readableFlowing back to null and the library stops fetching ("nobody is consuming").
    stream.on('readable', this.onReadable);
    // The stream emits 'offsets' each time it has set its positions for a new assignment (after
    // every rebalance). The first one may have come before this listener, so seek once now too.
    stream.on('offsets', this.onAssignment);
    this.onAssignment();
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

  private readonly onAssignment = (): void => {
    const partitions = assignedPartitions(this.member.consumer, this.options.topic);
    if (!this.options.storedOffsets || partitions.length === 0) return;
    const seek = ++this.seeks;
    // Called synchronously from the 'offsets' event, before the stream's first fetch from its new
    // positions: paused, it fetches nothing until they are corrected.
    this.stream.pause();
    void this.seekToStoredOffsets(partitions, seek).finally(() => {
      if (seek === this.seeks && !this.closed.signal.aborted) this.stream.resume();
    });
  };

  /**
   * Moves the fetch position of each partition the group has no committed offset for to the offset
   * the application stored: after the group lost its offsets (deleted, expired, a broker that lost
   * its state), the partitions resume where the application is, instead of re-reading all the
   * topic retains. Where the group has an offset, it stands, even when the stored one is further
   * (a member killed between its database commit and its Kafka commit): those records come again
   * and are skipped as duplicates, the ordinary at-least-once path, and the positions of the
   * library are left alone except when the group's state is really gone. Stored offsets of another incarnation of the topic (another
   * topic id) are not asked for; one beyond the end of the log is ignored. A stall whose record
   * the stored offset has passed (another member applied it) is forgotten. Retries until it has
   * read them, or a newer assignment or close() supersedes it.
   */
  private async seekToStoredOffsets(partitions: number[], seek: number): Promise<void> {
    const { topic } = this.options;
    for (let attempt = 0; seek === this.seeks && !this.closed.signal.aborted; attempt++) {
      try {
        const [stored, ends, committed] = await Promise.all([
          this.options.storedOffsets!(this.topicId, partitions),
          this.member.consumer.listOffsets({ topics: [topic] }),
          this.member.consumer.listCommittedOffsets({ topics: [{ topic, partitions }] }),
        ]);
        if (seek !== this.seeks) return;
        // The library has no seek: its fetch positions are this map, read at every fetch.
        const positions = this.stream.offsetsToFetch;
        for (const partition of partitions) {
          const next = stored.get(partition);
          if (next === undefined || (committed.get(topic)?.[partition] ?? -1n) >= 0n) continue;
          const end = ends.get(topic)?.[partition] ?? -1n;
          if (next > end) {
            this.options.report(
              new Error(`the stored offset ${next} of partition ${partition} is beyond the end of the log (${end}); going by the group's offset`),
              'seeking to the stored offsets',
            );
            continue;
          }
          this.stalls.releasePassed(partition, next);
          const key = `${topic}:${partition}`;
          const position = positions.get(key);
          if (position === undefined || next > position) positions.set(key, next);
        }
        return;
      } catch (error) {
        this.options.report(error, `reading the stored offsets failed (attempt ${attempt + 1}); retrying`);
        await sleep(backoffDelay(attempt), this.closed.signal);
      }
    }
  }

  /**
   * The records buffered, up to maxBatchSize, once there is at least one; [] on close/failure.
   * Records a stall holds back are left out.
   *
   * A batch does not wait for more records than the buffer holds: at rest that wait would delay
   * every lone event by its whole length. Under load batches grow by themselves, as the stream
   * keeps fetching while the previous batch is applied and committed.
   */
  async nextBatch(closing: AbortSignal): Promise<IncomingRecord[]> {
    const batch: IncomingRecord[] = [];
    while (batch.length < this.options.maxBatchSize) {
      if (closing.aborted || this.broken) return [];
      const message = this.stream.read() as KafkaMessage | null;
      if (message !== null) {
        const record = fromKafkaMessage(message, this.topicId);
        if (!this.stalls.holds(record)) batch.push(record);
        continue;
      }
      if (batch.length > 0) break;
      await new Promise<void>((resolve) => {
        const done = () => {
          closing.removeEventListener('abort', done);
          this.wake = null;
          resolve();
        };
        this.wake = done;
        closing.addEventListener('abort', done, { once: true });
      });
    }
    return batch;
  }

  /**
   * Commits the offsets after `records` (which this session delivered) without waiting for Kafka:
   * the next batch is applied while they are sent. One commit is in flight at a time, at most one
   * per commitIntervalMs; the offsets applied meanwhile go in the next one. Every commit writes
   * (and, on a broker that flushes each record, fsyncs) the group's offsets log, so under load this
   * turns one commit per batch into a few per second. A commit that fails breaks the session, as a
   * broken stream does; its records come again to the next session (at-least-once).
   */
  commitSoon(records: IncomingRecord[]): void {
    for (const { partition, offset } of records) {
      if (offset + 1n > (this.uncommitted.get(partition) ?? this.committed.get(partition) ?? -1n)) this.uncommitted.set(partition, offset + 1n);
    }
    if (this.uncommitted.size > 0) this.committing ??= this.sendCommits();
  }

  /** Sends what commitSoon() queued, now, and waits for it; rejects if a commit failed. */
  async flushCommits(): Promise<void> {
    this.flushing.abort();
    if (this.uncommitted.size > 0) this.committing ??= this.sendCommits();
    await this.committing;
    if (this.commitFailure) throw this.commitFailure;
  }

  private commitFailure: Error | null = null;

  private async sendCommits(): Promise<void> {
    try {
      while (this.uncommitted.size > 0 && !this.commitFailure) {
        const wait = this.lastCommitAt + this.options.commitIntervalMs - Date.now();
        if (wait > 0) await sleep(wait, this.flushing.signal);
        // After a rebalance the stream may hand out again records this session already committed past.
        const offsets = [...this.uncommitted]
          .filter(([partition, offset]) => offset > (this.committed.get(partition) ?? -1n))
          .map(([partition, offset]) => ({ topic: this.options.topic, partition, offset, leaderEpoch: -1 }));
        this.uncommitted.clear();
        if (offsets.length === 0) break;
        this.lastCommitAt = Date.now();
        await this.member.consumer.commit({ offsets });
        for (const { partition, offset } of offsets) {
          if (offset > (this.committed.get(partition) ?? -1n)) this.committed.set(partition, offset);
        }
      }
    } catch (error) {
      this.commitFailure = toError(error);
      this.fail(this.commitFailure);
    } finally {
      this.committing = null;
    }
  }

  /** Closes the stream; the member stays, for the next session. */
  async close(): Promise<void> {
    this.closed.abort();
    this.member.onBreak = null;
    this.stream.removeListener('offsets', this.onAssignment);
    this.stream.removeListener('close', this.onClose);
    this.stream.removeListener('readable', this.onReadable);
    await this.stream.close().catch(() => {});
  }
}
