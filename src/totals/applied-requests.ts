import type { BatchResult } from '../platform/kafka/partition-stalls.ts';
import type { IncomingRecord } from '../platform/kafka/records.ts';

/** A watch on one request id: `applied` resolves (never rejects) once this instance applied it. */
export interface AppliedWatch {
  readonly applied: Promise<void>;
  /** Forgets the watch; call it once done waiting, whether it resolved or not. */
  stop(): void;
}

/**
 * Tells the `GET /total?after=` reads waiting in this process that this instance has just applied
 * the request they wait for, so that they read again at once instead of at their next poll (10 ms,
 * doubling to 160 ms: up to 160 ms added to a sum that took 20 ms to arrive). Only a hint, the poll
 * stays: a sum that another instance of the group applied (it holds that partition), or that the
 * replica has not replayed yet, is found by the poll as before.
 */
export class AppliedRequests {
  private readonly waiting = new Map<string, Set<() => void>>();

  /**
   * Watches `requestId`. Start the watch before the read that may not see the sum yet: an apply
   * that commits during that read then still resolves it.
   */
  watch(requestId: string): AppliedWatch {
    let wake!: () => void;
    const applied = new Promise<void>((resolve) => (wake = resolve));
    let watchers = this.waiting.get(requestId);
    if (!watchers) this.waiting.set(requestId, (watchers = new Set()));
    watchers.add(wake);
    return {
      applied,
      stop: () => {
        watchers.delete(wake);
        if (watchers.size === 0 && this.waiting.get(requestId) === watchers) this.waiting.delete(requestId);
      },
    };
  }

  /** Call once the transaction that applied these requests has committed. */
  applied(requestIds: Iterable<string>): void {
    if (this.waiting.size === 0) return;
    for (const requestId of requestIds) {
      const watchers = this.waiting.get(requestId);
      if (!watchers) continue;
      this.waiting.delete(requestId);
      for (const wake of watchers) wake();
    }
  }

  /** How many request ids are watched. */
  get size(): number {
    return this.waiting.size;
  }
}

/**
 * `apply` as an onBatch that, once `apply` resolved (its transaction committed), tells `requests`
 * which requests the batch carried. The calculator keys each event by its request id (the outbox's message_key),
 * so the keys name them without decoding the events again; a record whose key is not a request id
 * only wakes nobody, and its reader finds the sum by polling.
 */
export function announceApplied(
  requests: AppliedRequests,
  apply: (records: IncomingRecord[]) => Promise<BatchResult>,
): (records: IncomingRecord[]) => Promise<BatchResult> {
  return async (records) => {
    const result = await apply(records);
    // Under load batches are large and nobody waits: no list of keys then.
    if (requests.size > 0) requests.applied(records.flatMap((record) => (record.key === null ? [] : [record.key])));
    return result;
  };
}
