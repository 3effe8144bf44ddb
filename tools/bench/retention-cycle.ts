// `npm run bench -- --retention-cycle` (also part of --history): do the kept tables stay the same
// size once a window has gone round? The services run on a database and topic of their own with
// short windows (IDEMPOTENCY_/DEDUP_WINDOW_SECONDS 20, _PARTITION_SECONDS 5), ghz calls Add at a fixed
// modest rate (open loop), and both services' summa_retention_* gauges are read every second.
// Rows are kept between one window and one window plus one period, so the tables grow for the
// first window plus a period, and from then on a partition is dropped each period while one fills:
// the "steady" samples are those after that, and their max/min says how flat the tables stay.
import type pg from 'pg';
import type { BenchProcess } from './bench-process.ts';
import { runGhz, type GhzLoadResult } from './ghz-load.ts';

export interface RetentionCycleOptions {
  ghz: string;
  /** The calculator's gRPC address (the ports are the services' usual ones in the benchmark). */
  target: string;
  calculatorUrl: string;
  totalsUrl: string;
  /** Starts a service with these variables over the benchmark's (DATABASE_URL, topic, windows). */
  service: (name: 'calculator' | 'relay' | 'totals', env: Record<string, string>) => BenchProcess;
  /** A database of its own, created empty (the history and P's rows would only blur the picture). */
  databaseUrl: string;
  sql: pg.Pool;
  /** Add/s, open loop. */
  rate: number;
  windowSeconds: number;
  periodSeconds: number;
  /** Whole windows sampled once the tables are steady. */
  steadyWindows: number;
  log: (message: string) => void;
  onCleanUp: (cleanup: () => Promise<unknown>) => void;
}

export interface RetentionSample {
  /** Seconds since the load began. */
  at: number;
  rows: number;
  bytes: number;
  partitions: number;
  rowsDropped: number;
  generation: number;
}

export interface TableCycle {
  rows_min: number;
  rows_max: number;
  bytes_min: number;
  bytes_max: number;
  /** bytes_max / bytes_min over the steady samples: 1 is perfectly flat. */
  bytes_max_over_min: number;
  rows_max_over_min: number;
  /**
   * The largest size in the last window sampled over that in the first steady one: above 1 by more
   * than a period's worth (period / window) would be growth from one cycle to the next.
   */
  bytes_last_over_first_window: number;
  /** Seconds between switches to the next partition over the steady samples (the period if on time). */
  seconds_per_switch: number;
  /** Partitions kept (the one written to included), least and most. */
  partitions_min: number;
  partitions_max: number;
  /** Over the whole run, from the catalogue. */
  partitions_dropped: number;
  rows_dropped: number;
  /** Every sample, for a plot. */
  samples: RetentionSample[];
  /** Steps of the service's keeper that failed (a warning each in its log, retried at the next step). */
  keeper_step_failures: number;
  keeper_last_failure?: string;
}

export interface RetentionCycleFigures {
  rate: number;
  window_seconds: number;
  period_seconds: number;
  /** Samples from this many seconds after the load began on count as steady. */
  steady_from_seconds: number;
  load_seconds: number;
  acked: number;
  quarantined: number;
  tables: Record<'calculator.requests' | 'totals.applied_events', TableCycle>;
  load: GhzLoadResult;
}

const TABLES = ['calculator.requests', 'totals.applied_events'] as const;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (value: number, digits = 3) => Number(value.toFixed(digits));

/** A gauge's value for one table in a Prometheus text exposition; undefined when absent. */
export function retentionGauge(exposition: string, name: string, table: string): number | undefined {
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(`${name}{`) || !line.includes(`table="${table}"`)) continue;
    return Number(line.slice(line.lastIndexOf('}') + 1).trim().split(' ')[0]);
  }
  return undefined;
}

export async function runRetentionCycle(options: RetentionCycleOptions): Promise<RetentionCycleFigures> {
  const { log, windowSeconds, periodSeconds } = options;
  const env = {
    DATABASE_URL: options.databaseUrl,
    KAFKA_TOPIC: 'bench.retention',
    TOTALS_GROUP_ID: 'bench-retention',
    IDEMPOTENCY_WINDOW_SECONDS: String(windowSeconds),
    IDEMPOTENCY_PARTITION_SECONDS: String(periodSeconds),
    DEDUP_WINDOW_SECONDS: String(windowSeconds),
    DEDUP_PARTITION_SECONDS: String(periodSeconds),
  };
  const calculator = options.service('calculator', env);
  const relay = options.service('relay', env);
  const totals = options.service('totals', env);
  options.onCleanUp(() => Promise.all([calculator.stop(), relay.stop(), totals.stop()]));
  log(`retention cycle: services with a ${windowSeconds} s window of ${periodSeconds} s partitions`);
  await calculator.start();
  await Promise.all([relay.start(), totals.start()]);

  const steadyFrom = windowSeconds + 2 * periodSeconds;
  const loadSeconds = steadyFrom + options.steadyWindows * windowSeconds;
  const samples: Record<(typeof TABLES)[number], RetentionSample[]> = { 'calculator.requests': [], 'totals.applied_events': [] };
  const sources = { 'calculator.requests': options.calculatorUrl, 'totals.applied_events': options.totalsUrl };
  let loading = true;
  const began = performance.now();
  const sampler = (async () => {
    while (loading) {
      const tick = performance.now();
      for (const table of TABLES) {
        const response = await fetch(`${sources[table]}/metrics`);
        if (!response.ok) throw new Error(`GET ${sources[table]}/metrics answered ${response.status}`);
        const text = await response.text();
        const gauge = (name: string) => retentionGauge(text, name, table) ?? NaN;
        samples[table].push({
          at: round((tick - began) / 1000, 1),
          rows: gauge('summa_retention_rows'),
          bytes: gauge('summa_retention_bytes'),
          partitions: gauge('summa_retention_partitions'),
          rowsDropped: gauge('summa_retention_rows_dropped'),
          generation: gauge('summa_retention_current_generation'),
        });
      }
      await sleep(Math.max(0, 1000 - (performance.now() - tick)));
    }
  })();
  log(`retention cycle: ${options.rate} Add/s for ${loadSeconds} s (steady from ${steadyFrom} s), sampling the retention gauges every second`);
  let load: GhzLoadResult;
  try {
    load = await runGhz(options.ghz, options.target, { mode: 'open', rate: options.rate, durationSeconds: loadSeconds, connections: 2 });
  } finally {
    loading = false;
    await sampler;
  }

  // Every acknowledged sum applied, none quarantined as too old: the windows were long enough.
  const deadline = performance.now() + 120_000;
  const count = async () => Number((await options.sql.query<{ count: string }>('SELECT count::text FROM totals.total WHERE id = 1')).rows[0]!.count);
  while ((await count()) < load.acked) {
    if (performance.now() > deadline) throw new Error(`retention cycle: fewer than ${load.acked} events applied after 2 minutes`);
    await sleep(100);
  }
  const quarantined = Number((await options.sql.query<{ n: string }>('SELECT count(*)::text AS n FROM totals.rejected_records')).rows[0]!.n);
  const dropped = async (schema: string, table: string) =>
    (
      await options.sql.query<{ partitions: string; rows: string }>(
        `SELECT count(*)::text AS partitions, coalesce(sum(row_count), 0)::text AS rows FROM ${schema}.partitions WHERE table_name = $1 AND dropped_at IS NOT NULL`,
        [table],
      )
    ).rows[0]!;
  const catalogue = { 'calculator.requests': await dropped('calculator', 'requests'), 'totals.applied_events': await dropped('totals', 'applied_events') };
  await Promise.all([calculator.stop(), relay.stop(), totals.stop()]);
  const keeperLogs = { 'calculator.requests': calculator.logs, 'totals.applied_events': totals.logs };

  const tables = Object.fromEntries(
    TABLES.map((table) => {
      const steady = samples[table].filter((sample) => sample.at >= steadyFrom && Number.isFinite(sample.bytes));
      if (steady.length === 0) throw new Error(`retention cycle: no steady sample of ${table}`);
      const min = (pick: (s: RetentionSample) => number) => Math.min(...steady.map(pick));
      const max = (pick: (s: RetentionSample) => number) => Math.max(...steady.map(pick));
      const last = steady.at(-1)!.at;
      const firstWindow = steady.filter((sample) => sample.at < steadyFrom + windowSeconds);
      const lastWindow = steady.filter((sample) => sample.at > last - windowSeconds);
      const failures = keeperLogs[table].split('\n').filter((line) => line.includes('keeping the partitions failed'));
      const cycle: TableCycle = {
        rows_min: min((s) => s.rows),
        rows_max: max((s) => s.rows),
        bytes_min: min((s) => s.bytes),
        bytes_max: max((s) => s.bytes),
        bytes_max_over_min: round(max((s) => s.bytes) / Math.max(1, min((s) => s.bytes))),
        rows_max_over_min: round(max((s) => s.rows) / Math.max(1, min((s) => s.rows))),
        bytes_last_over_first_window: round(Math.max(...lastWindow.map((s) => s.bytes)) / Math.max(1, ...firstWindow.map((s) => s.bytes))),
        seconds_per_switch: round((last - steady[0]!.at) / Math.max(1, steady.at(-1)!.generation - steady[0]!.generation), 2),
        partitions_min: min((s) => s.partitions),
        partitions_max: max((s) => s.partitions),
        partitions_dropped: Number(catalogue[table].partitions),
        rows_dropped: Number(catalogue[table].rows),
        samples: samples[table],
        keeper_step_failures: failures.length,
        ...(failures.length > 0 ? { keeper_last_failure: failures.at(-1)!.slice(0, 500) } : {}),
      };
      return [table, cycle];
    }),
  ) as RetentionCycleFigures['tables'];
  return {
    rate: options.rate,
    window_seconds: windowSeconds,
    period_seconds: periodSeconds,
    steady_from_seconds: steadyFrom,
    load_seconds: loadSeconds,
    acked: load.acked,
    quarantined,
    tables,
    load,
  };
}

export function printRetentionTable(r: RetentionCycleFigures): void {
  console.log(
    `\nRetention cycle: ${r.rate} Add/s for ${r.load_seconds} s, ${r.window_seconds} s window of ${r.period_seconds} s partitions; ` +
      `steady from ${r.steady_from_seconds} s; ${r.acked} acknowledged, ${r.quarantined} quarantined`,
  );
  console.table(
    Object.entries(r.tables).map(([table, t]) => ({
      table,
      'rows min–max': `${t.rows_min}–${t.rows_max}`,
      'kB min–max': `${Math.round(t.bytes_min / 1024)}–${Math.round(t.bytes_max / 1024)}`,
      'bytes max/min': t.bytes_max_over_min,
      'bytes last/first window': t.bytes_last_over_first_window,
      's per switch': t.seconds_per_switch,
      'partitions kept': `${t.partitions_min}–${t.partitions_max}`,
      'partitions dropped (rows)': `${t.partitions_dropped} (${t.rows_dropped})`,
      'keeper step failures': t.keeper_step_failures,
    })),
  );
}
