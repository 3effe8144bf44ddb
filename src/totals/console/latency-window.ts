// End-to-end latency percentiles over the last seconds, from the cumulative buckets of this
// instance's summa_end_to_end_latency_seconds histogram: the counts added since an earlier reading
// are the events applied in between. A percentile is told as the bucket bound it falls under
// ("at most 50 ms"), which is all a histogram knows.

/** Cumulative counts per upper bound (seconds), ascending, +Inf last. */
export type BucketCounts = [upperBound: number, cumulative: number][];

export interface LatencyPercentiles {
  /** Events in the window. */
  events: number;
  /** Upper bounds in seconds ('+Inf': above the largest bucket, kept a string through JSON); null without events. */
  p50: number | '+Inf' | null;
  p99: number | '+Inf' | null;
}

export function latencyPercentiles(now: BucketCounts, before: BucketCounts | undefined): LatencyPercentiles {
  const earlier = new Map(before ?? []);
  const window = now.map(([bound, count]) => [bound, count - (earlier.get(bound) ?? 0)] as const);
  const events = window.at(-1)?.[1] ?? 0;
  const bound = (q: number) => {
    const found = window.find(([, count]) => count >= q * events)?.[0];
    return found === undefined ? null : found === Infinity ? '+Inf' : found;
  };
  return events <= 0 ? { events: 0, p50: null, p99: null } : { events, p50: bound(0.5), p99: bound(0.99) };
}

/** The buckets of a prom-client histogram's values (`histogram.get().values`). */
export function bucketCounts(values: { metricName?: string; labels: Record<string, string | number | undefined>; value: number }[]): BucketCounts {
  return values
    .filter((v) => v.metricName?.endsWith('_bucket') && v.labels.le !== undefined)
    .map((v) => [v.labels.le === '+Inf' ? Infinity : Number(v.labels.le), v.value] as [number, number])
    .sort(([a], [b]) => a - b);
}
