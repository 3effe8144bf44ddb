/**
 * A partition stopped at one of its records: that record and every later one of the partition are
 * neither delivered nor committed past, so whoever reads the partition next starts at that record.
 */
export interface PartitionStall {
  readonly partition: number;
  /** The record it stopped at. */
  readonly offset: bigint;
  /** Why, as one stable word fit for a metric label ("newer_event_version", "retrying"). */
  readonly reason: string;
  /** Why, for a person: shown by readiness and logged. */
  readonly detail: string;
}

/** What onBatch tells about a batch it handled. */
export interface BatchResult {
  /** Partitions to stop at a record of this batch; the batch's records before it count as done. */
  readonly stalled?: readonly PartitionStall[];
}

/** The partitions one session stopped, and the records that holds back. */
export class PartitionStalls {
  private readonly stalls = new Map<number, PartitionStall>();

  /** Stops a partition at `stall.offset`; a partition stopped already stays at the earlier record. */
  add(stall: PartitionStall): void {
    const known = this.stalls.get(stall.partition);
    if (!known || stall.offset < known.offset) this.stalls.set(stall.partition, stall);
  }

  /** Whether `record` is held back: in a stopped partition, at or after the record it stopped at. */
  holds(record: { partition: number; offset: bigint }): boolean {
    const stall = this.stalls.get(record.partition);
    return stall !== undefined && record.offset >= stall.offset;
  }

  /**
   * Forgets the stall of `partition` if `nextOffset` (where its stored progress says to go on) is
   * past the record it stopped at: someone else has taken care of that record. Returns the stall
   * forgotten.
   */
  releasePassed(partition: number, nextOffset: bigint): PartitionStall | undefined {
    const stall = this.stalls.get(partition);
    if (!stall || nextOffset <= stall.offset) return undefined;
    this.stalls.delete(partition);
    return stall;
  }

  list(): PartitionStall[] {
    return [...this.stalls.values()];
  }
}
