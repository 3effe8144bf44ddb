// How soon one Add shows in GET /total once acknowledged, on a pipeline at rest: one Add at a
// time, with a pause between them, so that every wait an idle pipeline adds (polls, lingers,
// batching windows) is in the figure and none is hidden behind another request's.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { CalculatorClient } from '../lib/grpc-clients.ts';

export interface IdleVisibilityOptions {
  /** The calculator's gRPC address, host:port. */
  grpcTarget: string;
  /** The totals service's HTTP base URL (GET /total is read there). */
  totalsUrl: string;
  samples: number;
  /** Pause after an Add is visible before the next is sent, so that the pipeline is at rest again. */
  gapMs: number;
  /**
   * How to see the Add in the total: `poll` GET /total back to back until the count holds it (the
   * default, the benchmark's figure), or `after`: one GET /total?after=<its request id>, which waits
   * in the totals service.
   */
  waitWith?: 'poll' | 'after';
  /** Give up on one Add after this long (default 10 s). */
  timeoutMs?: number;
  /**
   * The totals database: when given, the breakdown of each Add (accepted → applied, by the
   * database's clock) is read from totals.applied_events after the samples.
   */
  sql?: pg.Pool;
}

export interface IdleVisibility {
  /** Acknowledgement → first GET /total whose count holds the Add (ms). */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: number;
  /** GET /total round trips per sample: the resolution of the figure is one of them. */
  pollMs: number;
  /** The five slowest samples, by their place in the run (0 = first), to tell a slow start from a periodic stall. */
  slowest: { sample: number; ms: number }[];
  /**
   * Where the time went, p50 of each step (ms), when `sql` was given: accepted (the start of the
   * calculator's transaction, database clock) → ack (this process's clock, on the same host), ack →
   * applied (the start of the consumer's transaction), applied → visible (the consumer's commit and
   * the read that saw it).
   */
  breakdown?: { acceptedToAckMs: number; ackToAppliedMs: number; appliedToVisibleMs: number; acceptedToAppliedMs: number };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Nearest-rank percentile of ascending `sorted`. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const round = (value: number) => Number(value.toFixed(2));

async function totalCount(totalsUrl: string): Promise<number> {
  const response = await fetch(`${totalsUrl}/total`);
  if (!response.ok) throw new Error(`GET /total answered ${response.status}: ${await response.text()}`);
  return ((await response.json()) as { count: number }).count;
}

/** GET /total?after=: answers once the request's sum is in the total. */
async function totalCountAfter(totalsUrl: string, requestId: string, timeoutMs: number): Promise<number> {
  const response = await fetch(`${totalsUrl}/total?after=${encodeURIComponent(requestId)}&timeoutMs=${timeoutMs}`);
  if (!response.ok) throw new Error(`GET /total?after= answered ${response.status}: ${await response.text()}`);
  return ((await response.json()) as { count: number }).count;
}

/**
 * Sends `samples` Adds one at a time; after each acknowledgement polls GET /total back to back
 * (no pause: a pause would be a fixed wait of the measurement's own) until its count has grown by
 * one. Nothing else may be adding meanwhile. Plain GET /total by default, which shows when the sum
 * is in the database; `waitWith: 'after'` measures what a client of ?after= waits instead.
 */
export async function measureIdleVisibility(options: IdleVisibilityOptions): Promise<IdleVisibility> {
  const { grpcTarget, totalsUrl, samples, gapMs, timeoutMs = 10_000 } = options;
  const client = new CalculatorClient(grpcTarget);
  const latencies: number[] = [];
  const marks: { requestId: string; ackedAt: number; visibleAt: number }[] = [];
  // Date.now(), not timeOrigin + performance.now(): the latter drifts from the clock PostgreSQL reads.
  const wallClock = () => Date.now();
  let polls = 0;
  let pollTime = 0;
  try {
    // The first Add opens the channel and the HTTP connection; it is not measured, but waited for:
    // seen late, it would be taken for the next one's.
    let count = await totalCount(totalsUrl);
    await client.add({ num1: 0, num2: 0 });
    const warmUpSince = performance.now();
    while ((await totalCount(totalsUrl)) <= count) {
      if (performance.now() - warmUpSince > timeoutMs) throw new Error(`the first Add was not in GET /total within ${timeoutMs} ms`);
      await sleep(10);
    }
    for (;;) {
      await sleep(gapMs);
      const now = await totalCount(totalsUrl);
      if (now === count) break;
      count = now;
    }
    for (let sample = 0; sample < samples; sample++) {
      const requestId = randomUUID();
      await client.add({ num1: 1, num2: 1, requestId });
      const ackedAt = performance.now();
      const ackedAtWall = wallClock();
      for (;;) {
        const polledAt = performance.now();
        const now = options.waitWith === 'after' ? await totalCountAfter(totalsUrl, requestId, timeoutMs) : await totalCount(totalsUrl);
        polls++;
        pollTime += performance.now() - polledAt;
        if (now > count) {
          latencies.push(performance.now() - ackedAt);
          marks.push({ requestId, ackedAt: ackedAtWall, visibleAt: wallClock() });
          count = now;
          break;
        }
        if (performance.now() - ackedAt > timeoutMs) throw new Error(`an Add was not in GET /total within ${timeoutMs} ms of its acknowledgement`);
      }
      await sleep(gapMs);
    }
  } finally {
    client.close();
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    p50Ms: round(percentile(sorted, 50)),
    p99Ms: round(percentile(sorted, 99)),
    maxMs: round(sorted.at(-1) ?? NaN),
    samples: sorted.length,
    pollMs: round(pollTime / Math.max(1, polls)),
    slowest: latencies
      .map((ms, sample) => ({ sample, ms: round(ms) }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 5),
    ...(options.sql ? { breakdown: await breakdownOf(options.sql, marks) } : {}),
  };
}

async function breakdownOf(sql: pg.Pool, marks: { requestId: string; ackedAt: number; visibleAt: number }[]): Promise<IdleVisibility['breakdown']> {
  const { rows } = await sql.query<{ request_id: string; accepted_ms: number; applied_ms: number }>(
    `SELECT request_id, extract(epoch FROM accepted_at) * 1000 AS accepted_ms, extract(epoch FROM applied_at) * 1000 AS applied_ms
     FROM totals.applied_events WHERE request_id = ANY($1::text[])`,
    [marks.map((mark) => mark.requestId)],
  );
  const byId = new Map(rows.map((row) => [row.request_id, { accepted: Number(row.accepted_ms), applied: Number(row.applied_ms) }]));
  const steps = marks.flatMap((mark) => {
    const times = byId.get(mark.requestId);
    return times ? [{ ...times, ...mark }] : [];
  });
  const p50 = (values: number[]) => round(percentile(values.sort((a, b) => a - b), 50));
  return {
    acceptedToAckMs: p50(steps.map((s) => s.ackedAt - s.accepted)),
    ackToAppliedMs: p50(steps.map((s) => s.applied - s.ackedAt)),
    appliedToVisibleMs: p50(steps.map((s) => s.visibleAt - s.applied)),
    acceptedToAppliedMs: p50(steps.map((s) => s.applied - s.accepted)),
  };
}
