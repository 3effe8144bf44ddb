// The calculators' acknowledgement latency for the console: how long an Add took from its arrival
// to its answer, read from every calculator's /metrics (the gRPC handling histogram of Add and the
// HTTP duration histogram of POST /v1/sums, which share their buckets) and summed over them.
// Counts are differenced per calculator and then added, so that one calculator restarting (its
// counters back to zero) or not answering for a moment does not show as a burst or a hole.
import { readFile } from 'node:fs/promises';
import { readRunState } from '../../cli/run-state.ts';
import { entryPointsOf, getText } from '../../cli/targets.ts';
import type { BucketCounts } from './latency-window.ts';

/** The series of one calculator's exposition that time an Add, by metric name and the labels that pick Add out. */
const ACK_SERIES: { metric: string; labels: Record<string, string> }[] = [
  { metric: 'grpc_server_handling_seconds_bucket', labels: { grpc_method: 'Add' } },
  { metric: 'http_request_duration_seconds_bucket', labels: { method: 'POST', route: '/v1/sums' } },
];

/** Each calculator's cumulative ack buckets, by its /metrics URL. */
export type AckReadings = Map<string, BucketCounts>;

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** The ack buckets of one calculator's Prometheus text exposition, summed over the series that time an Add. */
export function ackBuckets(exposition: string): BucketCounts {
  const byBound = new Map<number, number>();
  for (const line of exposition.split('\n')) {
    const match = SAMPLE_LINE.exec(line);
    if (!match) continue;
    const series = ACK_SERIES.find((s) => s.metric === match[1]);
    if (!series) continue;
    const labels = Object.fromEntries([...match[2]!.matchAll(LABEL)].map(([, name, value]) => [name!, value!]));
    if (labels.le === undefined || Object.entries(series.labels).some(([name, value]) => labels[name] !== value)) continue;
    const bound = labels.le === '+Inf' ? Infinity : Number(labels.le);
    byBound.set(bound, (byBound.get(bound) ?? 0) + Number(match[3]));
  }
  return [...byBound].sort(([a], [b]) => a - b);
}

/**
 * The Adds answered between each calculator's earliest reading in `earlier` and its reading in
 * `now`, summed over the calculators, as cumulative buckets. A calculator with no earlier reading,
 * or whose counts went down (it restarted), counts from zero.
 */
export function ackWindow(now: AckReadings, earlier: AckReadings[]): BucketCounts {
  const summed = new Map<number, number>();
  for (const [url, current] of now) {
    const oldest = earlier.find((reading) => reading.has(url))?.get(url);
    const before = new Map(oldest ?? []);
    const restarted = current.some(([bound, count]) => count < (before.get(bound) ?? 0));
    for (const [bound, count] of current) {
      summed.set(bound, (summed.get(bound) ?? 0) + count - (restarted ? 0 : (before.get(bound) ?? 0)));
    }
  }
  return [...summed].sort(([a], [b]) => a - b);
}

/** Reads every calculator's /metrics; the ones that did not answer are named in problems. */
export async function scrapeAckLatency(urls: string[], options: { ca?: Buffer; timeoutMs?: number } = {}): Promise<{ readings: AckReadings; problems: string[] }> {
  const readings: AckReadings = new Map();
  const problems: string[] = [];
  await Promise.all(
    urls.map(async (url) => {
      try {
        const { status, text } = await getText(url, 'calculator', { timeoutMs: options.timeoutMs ?? 800, ...(options.ca ? { ca: options.ca } : {}) });
        if (status !== 200) throw new Error(`GET ${url} answered HTTP ${status}`);
        readings.set(url, ackBuckets(text));
      } catch (error) {
        problems.push(`ack latency: ${url}: ${(error as Error).message}`);
      }
    }),
  );
  return { readings, problems: problems.sort() };
}

/**
 * The calculators a run state names (under `npm start`), scraped with the CA their HTTPS chains
 * to; without a run state there is no calculator to ask and the reading is empty.
 */
export function runStateAckSource(runDataDir: string | undefined): () => Promise<{ readings: AckReadings; problems: string[] }> {
  return async () => {
    if (runDataDir === undefined) return { readings: new Map(), problems: [] };
    const state = await readRunState(runDataDir);
    if (!state) return { readings: new Map(), problems: [] };
    const ca = state.serviceCaFile ? await readFile(state.serviceCaFile) : undefined;
    return scrapeAckLatency(entryPointsOf(state).calculatorMetricsUrls, ca ? { ca } : {});
  };
}
