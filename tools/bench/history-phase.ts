// `npm run bench -- --history N`: P once more, on the same running services, after N events of
// history were loaded (history-load.ts): the same warm-up, closed loop and open loop as P, the open
// loop at the same rate as P's so that the latencies compare. The services keep their default
// 7-day windows, so nothing is dropped while it is measured.
import { runGhz, type Callers, type GhzLoadResult } from './ghz-load.ts';
import { appliedEvents, type LatencyPercentiles } from './applied-events.ts';
import { loadHistory, type HistoryLoad } from './history-load.ts';
import type pg from 'pg';

export interface HistoryPhaseOptions {
  ghz: string;
  /** The calculator's gRPC address. */
  target: string;
  callers: Callers;
  plan: { windowSeconds: number; warmupSeconds: number };
  sql: pg.Pool;
  events: number;
  /** P's figures on the empty database, to compare with. */
  empty: { pipelineRps: number; openRate: number };
  log: (message: string) => void;
}

export interface HistoryFigures {
  history_events: number;
  history_pipeline_rps: number;
  history_ratio: number;
  /** Ack p99 (ms) of the closed loop at saturation, and of the open loop at P's half-load rate. */
  history_closed_ack_p99_ms: number;
  history_ack_p50_ms: number;
  history_ack_p99_ms: number;
  history_e2e_p99_ms: number;
  history_load_seconds: number;
  history_details: {
    load: HistoryLoad;
    closed: GhzLoadResult;
    closed_consumer_kept_up: boolean;
    closed_applied_rps: number;
    closed_e2e_ms: LatencyPercentiles;
    open_rate: number;
    open: GhzLoadResult;
    open_e2e_ms: LatencyPercentiles;
  };
}

const round = (value: number, digits = 2) => Number(value.toFixed(digits));

export async function runHistoryPhase(options: HistoryPhaseOptions): Promise<HistoryFigures> {
  const { ghz, target, callers, plan, sql, log } = options;
  const { appliedCount, waitApplied, endToEnd, appliedBetween } = appliedEvents(sql);
  log(`history: loading ${options.events.toLocaleString('en-US')} events over the window's generations`);
  const load = await loadHistory({ sql, events: options.events, log });
  log(`history: loaded in ${load.load_seconds} s (requests ${(load.requests_bytes / 2 ** 30).toFixed(2)} GiB, applied events ${(load.applied_events_bytes / 2 ** 30).toFixed(2)} GiB)`);

  let expected = await appliedCount();
  log(`history P: warming up (${plan.warmupSeconds}s)`);
  expected += (await runGhz(ghz, target, { mode: 'closed', ...callers, durationSeconds: plan.warmupSeconds })).acked;
  await waitApplied(expected);

  log(`history P: closed loop, ${callers.concurrency} callers on ${callers.connections} connections, ${plan.windowSeconds}s`);
  const closedFrom = new Date();
  const closed = await runGhz(ghz, target, { mode: 'closed', ...callers, durationSeconds: plan.windowSeconds });
  const closedTo = new Date();
  expected += closed.acked;
  const catchUpSeconds = await waitApplied(expected);
  const closedEndToEnd = await endToEnd(closedFrom, closedTo);
  const appliedPerSecond = (await appliedBetween(closedFrom, closedTo)) / ((closedTo.getTime() - closedFrom.getTime()) / 1000);
  // As P counts it: the acknowledged rate if the consumer kept up, else what it applied.
  const keptUp = catchUpSeconds < 1 && closedEndToEnd.p99 < 1000;
  const pipelineRps = keptUp ? closed.ackedPerSecond : Math.min(closed.ackedPerSecond, appliedPerSecond);

  log(`history P: ${closed.ackedPerSecond.toFixed(0)} Add/s acknowledged; open loop at P's ${options.empty.openRate.toFixed(0)}/s`);
  const openFrom = new Date();
  const open = await runGhz(ghz, target, { mode: 'open', rate: options.empty.openRate, durationSeconds: plan.windowSeconds, connections: callers.connections });
  const openTo = new Date();
  expected += open.acked;
  await waitApplied(expected);
  const openEndToEnd = await endToEnd(openFrom, openTo);
  const applied = await appliedCount();
  if (applied !== expected) throw new Error(`history P: ${applied} events applied, but ${expected} were expected`);

  return {
    history_events: options.events,
    history_pipeline_rps: round(pipelineRps, 0),
    history_ratio: round(pipelineRps / options.empty.pipelineRps, 3),
    history_closed_ack_p99_ms: round(closed.p99Ms),
    history_ack_p50_ms: round(open.p50Ms),
    history_ack_p99_ms: round(open.p99Ms),
    history_e2e_p99_ms: round(openEndToEnd.p99),
    history_load_seconds: load.load_seconds,
    history_details: {
      load,
      closed,
      closed_consumer_kept_up: keptUp,
      closed_applied_rps: round(appliedPerSecond, 0),
      closed_e2e_ms: closedEndToEnd,
      open_rate: round(options.empty.openRate, 0),
      open,
      open_e2e_ms: openEndToEnd,
    },
  };
}

/** P on the empty database against P with the history, side by side. */
export function printHistoryTable(
  p: { pipeline_rps: number; ack_p50_ms: number; ack_p99_ms: number; e2e_p99_ms: number; details: { p_closed: GhzLoadResult } },
  h: HistoryFigures,
): void {
  console.log(`\nP on an empty database, then with ${h.history_events.toLocaleString('en-US')} events of history (loaded in ${h.history_load_seconds} s)`);
  console.table([
    ['Add/s (closed loop)', p.pipeline_rps, h.history_pipeline_rps, `ratio ${h.history_ratio} (target ≥ 0.9)`],
    ['ack p99 ms, closed loop', round(p.details.p_closed.p99Ms), h.history_closed_ack_p99_ms, ''],
    ['ack p50 / p99 ms @ P\'s 50% rate', `${p.ack_p50_ms} / ${p.ack_p99_ms}`, `${h.history_ack_p50_ms} / ${h.history_ack_p99_ms}`, ''],
    ['end-to-end p99 ms @ P\'s 50% rate', p.e2e_p99_ms, h.history_e2e_p99_ms, ''],
  ].map(([figure, empty, history, note]) => ({ figure, empty, history, note })));
}
