import { backoffDelay, sleep } from '../backoff.ts';
import { ConsumerSession, type SessionOptions } from './consumer-session.ts';
import type { Membership } from './group-member.ts';
import type { BatchResult } from './partition-stalls.ts';
import type { IncomingRecord } from './records.ts';

export interface DeliveryLoopOptions extends SessionOptions {
  /** How long join() keeps trying before it rejects. */
  startTimeoutMs: number;
}

/** A batch whose onBatch keeps failing: since when, and the latest error. */
export interface FailingBatch {
  readonly records: readonly IncomingRecord[];
  readonly since: number;
  readonly attempts: number;
  readonly error: unknown;
}

/**
 * Hands the records of one session after another to `onBatch`, one call at a time, and commits
 * them once it resolved: a failed onBatch is retried as it is, a broken session is replaced (by
 * rejoining the group) until `closing` aborts. Partitions onBatch says it stopped are committed
 * only up to the record they stopped at, and held back for the rest of the session.
 */
export class DeliveryLoop {
  private current: ConsumerSession | null = null;
  private failing: FailingBatch | null = null;

  constructor(
    private readonly membership: Membership,
    private readonly options: DeliveryLoopOptions,
    private readonly onBatch: (records: IncomingRecord[]) => Promise<BatchResult | void>,
    private readonly closing: AbortSignal,
  ) {}

  /** The session delivering batches right now; null between sessions. */
  get session(): ConsumerSession | null {
    return this.current;
  }

  /** The batch onBatch has failed for and that is being retried; null while batches succeed. */
  get failingBatch(): FailingBatch | null {
    return this.failing;
  }

  /** Opens the first session, retrying until startTimeoutMs has passed; rejects if close() comes first. */
  async join(): Promise<ConsumerSession> {
    const deadline = Date.now() + this.options.startTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      if (this.closing.aborted) throw new Error('BatchConsumer closed before it started');
      try {
        const first = await this.openSession();
        if (!this.closing.aborted) return first;
        await first.close();
        await this.membership.leave();
      } catch (error) {
        if (Date.now() >= deadline) {
          await this.membership.leave();
          throw error;
        }
        this.options.report(error, 'joining the consumer group failed; retrying');
        await sleep(reconnectDelay(attempt), this.closing);
      }
    }
  }

  /** Delivers through `first`, then through a new session whenever one breaks, until close(); then leaves the group. */
  async run(first: ConsumerSession): Promise<void> {
    let current: ConsumerSession | null = first;
    let attempt = 0;
    while (!this.closing.aborted) {
      if (!current) {
        try {
          current = await this.openSession();
        } catch (error) {
          this.options.report(error, 'joining the consumer group failed; retrying');
          await sleep(reconnectDelay(attempt++), this.closing);
          continue;
        }
      }
      this.current = current;
      const failure = await this.pump(current);
      this.current = null;
      await current.close();
      current = null;
      if (failure) {
        this.options.report(failure, 'consumer session failed; reconnecting');
        await sleep(reconnectDelay(attempt++), this.closing);
      } else {
        attempt = 0;
      }
    }
    await this.membership.leave();
  }

  private async openSession(): Promise<ConsumerSession> {
    return ConsumerSession.open(await this.membership.current(), this.options);
  }

  /** Delivers and commits batches until close() or until the session breaks (returns its error). */
  private async pump(session: ConsumerSession): Promise<Error | null> {
    while (!this.closing.aborted) {
      const records = await session.nextBatch(this.closing);
      // Offsets queued but not sent are lost with a broken session: their records come again and are skipped.
      if (session.failure) return session.failure;
      if (records.length === 0) continue;
      const result = await this.deliver(records);
      if (!result) return this.flush(session);
      for (const stall of result.stalled ?? []) session.stalls.add(stall);
      // A commit that fails breaks the session: the next one re-reads from the last commit (at-least-once).
      session.commitSoon(records.filter((record) => !session.stalls.holds(record)));
    }
    return this.flush(session);
  }

  /** Commits what the session applied before it ends; the error if that failed. */
  private async flush(session: ConsumerSession): Promise<Error | null> {
    try {
      await session.flushCommits();
      return session.failure;
    } catch (error) {
      return toError(error);
    }
  }

  /** Calls onBatch until it succeeds and returns what it told; null if close() came first. */
  private async deliver(records: IncomingRecord[]): Promise<BatchResult | null> {
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return (await this.onBatch(records)) ?? {};
        } catch (error) {
          this.failing = { records, since: this.failing?.since ?? Date.now(), attempts: attempt + 1, error };
          this.options.report(error, `onBatch failed for ${records.length} records (attempt ${attempt + 1}); retrying`);
        }
        await sleep(backoffDelay(attempt), this.closing);
        if (this.closing.aborted) return null;
      }
    } finally {
      this.failing = null;
    }
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
