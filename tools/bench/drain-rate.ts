// Apply throughput while a backlog drains, from the applied count sampled over time.

export interface CountSample {
  /** When the count was read (ms, any fixed origin). */
  atMs: number;
  count: number;
  /** CPU seconds the consumers had used by then, when known. */
  cpuSeconds?: number;
}

export interface DrainRates {
  /** From the first sample that saw an event applied to the one that saw the whole backlog. */
  eventsPerSecond: number;
  /**
   * Between the samples that first saw 10% and 90% of the backlog: leaves out the consumers'
   * start, the group's first assignments and the last partitions finishing alone.
   */
  steadyEventsPerSecond: number;
  /** The consumers' CPU per event over the same 10–90% stretch (NaN without cpuSeconds). */
  steadyCpuMsPerEvent: number;
  /** From `startMs` (the consumers' spawn) to the first event applied. */
  firstAppliedAfterSeconds: number;
  /** From `startMs` to the whole backlog applied. */
  totalSeconds: number;
}

/** NaN where the samples never got there; `backlog` is the count that means drained. */
export function drainRates(samples: readonly CountSample[], backlog: number, startMs: number): DrainRates {
  const reached = (count: number) => samples.find((sample) => sample.count >= count);
  const rate = (from: CountSample | undefined, to: CountSample | undefined) =>
    from && to && to.atMs > from.atMs ? ((to.count - from.count) * 1000) / (to.atMs - from.atMs) : NaN;
  const first = samples.find((sample) => sample.count > 0);
  const done = reached(backlog);
  const [from, to] = [reached(Math.ceil(backlog * 0.1)), reached(Math.ceil(backlog * 0.9))];
  const cpuMsPerEvent =
    from?.cpuSeconds !== undefined && to?.cpuSeconds !== undefined && to.count > from.count
      ? ((to.cpuSeconds - from.cpuSeconds) * 1000) / (to.count - from.count)
      : NaN;
  return {
    eventsPerSecond: rate(first, done),
    steadyEventsPerSecond: rate(from, to),
    steadyCpuMsPerEvent: cpuMsPerEvent,
    firstAppliedAfterSeconds: first ? (first.atMs - startMs) / 1000 : NaN,
    totalSeconds: done ? (done.atMs - startMs) / 1000 : NaN,
  };
}
