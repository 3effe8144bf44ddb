// Phase C of `npm run bench -- --cluster`: the same k6 load as phase P, through nginx's gRPC port
// into `npm start -- --cluster` (3 calculators, 2 relays, 3 totals consumers, PostgreSQL primary and
// streaming replica, and whatever Kafka the launcher runs); then the apply throughput of 1 and of 3
// totals consumers draining one backlog.
import { chmod, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../lib/free-port.ts';
import { appliedEvents, type LatencyPercentiles } from './applied-events.ts';
import { BenchProcess, httpReady } from './bench-process.ts';
import { kafkaClientEnv, PROCESS_GROUPS, startClusterStack, type ClusterStack, type ProcessGroup } from './cluster-stack.ts';
import { drainRates, type CountSample } from './drain-rate.ts';
import { runLoad, type LoadResult } from './k6-load.ts';
import { cpuSeconds, machineBusyCpuSeconds, treeCpuSeconds } from './process-stats.ts';

export interface ClusterPhaseOptions {
  k6: string;
  runId: string;
  vus: number;
  plan: { windowSeconds: number; warmupSeconds: number; backlog: number };
  /** A temporary folder of the run; the cluster's data folder is made in it. */
  workDir: string;
  log: (message: string) => void;
  /** Registers a step the benchmark runs when it stops, however it stops. */
  onCleanUp: (cleanup: () => Promise<unknown>) => void;
}

export interface DrainFigures {
  consumers: number;
  backlog: number;
  /** First event applied → whole backlog applied. */
  events_per_second: number;
  /** Between 10% and 90% of the backlog applied. */
  steady_events_per_second: number;
  first_applied_after_seconds: number;
  seconds_including_start: number;
  /** CPU per event applied, from the consumers' spawn (start-up included) to the backlog applied. */
  cpu_ms_per_event: Record<'consumers' | 'postgres' | 'kafka' | 'all', number>;
  /** The consumers' CPU per event between 10% and 90% of the backlog. */
  steady_consumer_cpu_ms_per_event: number;
  /** The whole machine's busy cores (every process, other work included) while it drained. */
  machine_cores_busy: number;
}

export interface ClusterFigures {
  topology: { calculators: number; relays: number; totals: number; kafka_brokers: number; postgres: string; kafka_security: string };
  cluster_rps: number;
  ack_p50_ms: number;
  ack_p99_ms: number;
  e2e_p50_ms: number;
  e2e_p99_ms: number;
  consumer_kept_up: boolean;
  drain_one_consumer_rps: number;
  drain_three_consumers_rps: number;
  /** CPU ms per acknowledged request and process group, and cores busy (CPU s per wall s). */
  cpu_ms_per_request_at_saturation: Record<ProcessGroup | 'all', number>;
  cpu_ms_per_request_at_half_load: Record<ProcessGroup | 'all', number>;
  cores_busy_at_saturation: Record<ProcessGroup | 'load_generator' | 'all', number>;
  /** Cores busy over 5 s with no load, after the warm-up was applied. */
  idle_cores_busy: Record<ProcessGroup | 'all', number>;
  /** Busy cores of the whole machine over the closed loop, other work included (of os.cpus().length). */
  machine_cores_busy_at_saturation: number;
  load_average_at_start: number[];
  load_average_at_end: number[];
  details: {
    start_seconds: number;
    c_closed: LoadResult;
    c_closed_applied_rps: number;
    c_closed_catch_up_seconds: number;
    c_closed_e2e_ms: LatencyPercentiles;
    c_open: LoadResult;
    c_open_e2e_ms: LatencyPercentiles;
    fill: LoadResult | null;
    drain: DrainFigures[];
  };
}

const IDLE_SECONDS = 5;
const round = (value: number, digits = 2) => Number(value.toFixed(digits));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const loadAverage = () => os.loadavg().map((value) => round(value));

export async function runClusterPhase(options: ClusterPhaseOptions): Promise<ClusterFigures> {
  const { k6, runId, vus, plan, log } = options;
  const dataDir = path.join(options.workDir, 'cluster');
  await mkdir(dataDir, { recursive: true });
  await chmod(dataDir, 0o755); // as root, PostgreSQL runs as "postgres", which must enter it
  const loadAtStart = loadAverage();

  log('C: starting npm start -- --cluster (first start of its Kafka may take minutes)');
  const startedAt = performance.now();
  const stack = await startClusterStack({ dataDir });
  options.onCleanUp(() => stack.stop());
  const startSeconds = (performance.now() - startedAt) / 1000;
  const { state } = stack;
  const count = (role: string) => state.components.filter((component) => component.role === role).length;
  log(`C: running in ${startSeconds.toFixed(0)} s: ${state.components.map((component) => component.name).join(', ')}`);

  const sql = new pg.Pool({ connectionString: state.databaseUrl, max: 2 });
  options.onCleanUp(() => sql.end());
  const { appliedCount, waitApplied, endToEnd, appliedBetween } = appliedEvents(sql);
  const target = stack.grpcTarget;

  let expected = await appliedCount();
  log(`C: warming up (${plan.warmupSeconds}s) through nginx ${target}`);
  expected += (await runLoad(k6, target, `${runId}-cw`, { mode: 'closed', vus, durationSeconds: plan.warmupSeconds })).acked;
  await waitApplied(expected);
  // What the cluster costs while nothing happens (pollers, heartbeats, replication, the brokers'
  // own work): at a low rate it is a large share of the CPU per request.
  const idle0 = await stack.groupCpuSeconds();
  await sleep(IDLE_SECONDS * 1000);
  const idle1 = await stack.groupCpuSeconds();
  const idleCores = Object.fromEntries(PROCESS_GROUPS.map((group) => [group, round((idle1[group] - idle0[group]) / IDLE_SECONDS)])) as Record<ProcessGroup, number>;

  log(`C: closed loop, ${vus} callers, ${plan.windowSeconds}s`);
  const cpu0 = await stack.groupCpuSeconds();
  const machine0 = machineBusyCpuSeconds();
  const closedFrom = new Date();
  const closed = await runLoad(k6, target, `${runId}-cc`, { mode: 'closed', vus, durationSeconds: plan.windowSeconds });
  const closedTo = new Date();
  const machine1 = machineBusyCpuSeconds();
  const cpu1 = await stack.groupCpuSeconds();
  expected += closed.acked;
  const catchUpSeconds = await waitApplied(expected);
  const closedEndToEnd = await endToEnd(closedFrom, closedTo);
  const appliedPerSecond = (await appliedBetween(closedFrom, closedTo)) / ((closedTo.getTime() - closedFrom.getTime()) / 1000);
  // As in phase P: the consumers kept up when events were applied within a second of acceptance.
  const keptUp = catchUpSeconds < 1 && closedEndToEnd.p99 < 1000;
  const clusterRps = keptUp ? closed.ackedPerSecond : Math.min(closed.ackedPerSecond, appliedPerSecond);

  log(`C: ${closed.ackedPerSecond.toFixed(0)} Add/s acknowledged, consumers ${keptUp ? 'kept up' : `fell behind (applied ${appliedPerSecond.toFixed(0)}/s)`}; open loop at 50% of ${clusterRps.toFixed(0)}/s`);
  const cpu2 = await stack.groupCpuSeconds();
  const openFrom = new Date();
  const open = await runLoad(k6, target, `${runId}-co`, { mode: 'open', rate: clusterRps / 2, durationSeconds: plan.windowSeconds });
  const openTo = new Date();
  expected += open.acked;
  await waitApplied(expected);
  const cpu3 = await stack.groupCpuSeconds();
  const openEndToEnd = await endToEnd(openFrom, openTo);

  // The backlog: every event in the topic, topped up towards plan.backlog, applied once by the
  // cluster's own consumers; fresh consumer groups then read it all again from the first offset. The
  // top-up is held to about three windows of load at the closed loop's rate: on a busy machine
  // the cluster accepts only a few hundred Adds a second, and 100,000 would take many minutes.
  const maxFillSeconds = plan.windowSeconds * 3;
  const fillCount = Math.min(Math.max(0, plan.backlog - expected), Math.ceil(closed.ackedPerSecond * maxFillSeconds));
  let fill: LoadResult | null = null;
  if (fillCount > 0) {
    log(`C: topping the topic up towards ${plan.backlog} events (${fillCount} more, at most about ${maxFillSeconds} s of load)`);
    fill = await runLoad(k6, target, `${runId}-cf`, { mode: 'fill', vus, iterations: fillCount });
    expected += fill.acked;
    await waitApplied(expected);
  }
  const backlog = await appliedCount();
  const drain: DrainFigures[] = [];
  for (const consumers of [1, 3]) {
    log(`C: drain — ${consumers} totals consumer${consumers > 1 ? 's' : ''} of a new group read the ${backlog} events into an empty database`);
    drain.push(await measureDrain(stack, { consumers, backlog, runId, onCleanUp: options.onCleanUp }));
    log(`C: ${consumers} consumer(s): ${drain.at(-1)!.events_per_second} events/s (steady ${drain.at(-1)!.steady_events_per_second})`);
  }
  const loadAtEnd = loadAverage();
  await stack.stop();

  const perRequest = (from: Record<ProcessGroup, number>, to: Record<ProcessGroup, number>, requests: number) => {
    const ms = Object.fromEntries(PROCESS_GROUPS.map((group) => [group, round(((to[group] - from[group]) * 1000) / requests, 3)]));
    return { ...ms, all: round(Object.values(ms).reduce((a, b) => a + b, 0), 3) } as Record<ProcessGroup | 'all', number>;
  };
  const closedSeconds = (closedTo.getTime() - closedFrom.getTime()) / 1000;
  const cores = {
    ...Object.fromEntries(PROCESS_GROUPS.map((group) => [group, round((cpu1[group] - cpu0[group]) / closedSeconds)])),
    load_generator: round(closed.generatorCpuSeconds / closedSeconds),
  } as Record<ProcessGroup | 'load_generator', number>;
  return {
    topology: {
      calculators: count('calculator'),
      relays: count('relay'),
      totals: count('totals'),
      kafka_brokers: count('kafka-broker'),
      postgres: count('postgres-replica') > 0 ? 'primary + streaming replica' : 'primary',
      kafka_security: state.kafkaAdmin?.securityProtocol ?? 'PLAINTEXT',
    },
    cluster_rps: round(clusterRps, 0),
    ack_p50_ms: round(open.p50Ms),
    ack_p99_ms: round(open.p99Ms),
    e2e_p50_ms: round(openEndToEnd.p50),
    e2e_p99_ms: round(openEndToEnd.p99),
    consumer_kept_up: keptUp,
    drain_one_consumer_rps: drain[0]!.events_per_second,
    drain_three_consumers_rps: drain[1]!.events_per_second,
    cpu_ms_per_request_at_saturation: perRequest(cpu0, cpu1, closed.acked),
    cpu_ms_per_request_at_half_load: perRequest(cpu2, cpu3, open.acked),
    cores_busy_at_saturation: { ...cores, all: round(Object.values(cores).reduce((a, b) => a + b, 0)) },
    machine_cores_busy_at_saturation: round((machine1 - machine0) / closedSeconds),
    idle_cores_busy: { ...idleCores, all: round(Object.values(idleCores).reduce((a, b) => a + b, 0)) },
    load_average_at_start: loadAtStart,
    load_average_at_end: loadAtEnd,
    details: {
      start_seconds: round(startSeconds, 1),
      c_closed: closed,
      c_closed_applied_rps: round(appliedPerSecond, 0),
      c_closed_catch_up_seconds: round(catchUpSeconds, 2),
      c_closed_e2e_ms: closedEndToEnd,
      c_open: open,
      c_open_e2e_ms: openEndToEnd,
      fill,
      drain,
    },
  };
}

/**
 * `consumers` totals services of a group of their own, on a database of their own (so that none
 * of the events counts as applied already), read the whole topic from its first offset; the
 * applied count in that database, sampled every 100 ms, gives the rates.
 */
async function measureDrain(
  stack: ClusterStack,
  options: { consumers: number; backlog: number; runId: string; onCleanUp: ClusterPhaseOptions['onCleanUp'] },
): Promise<DrainFigures> {
  const { consumers, backlog } = options;
  const database = `bench_drain_${consumers}`;
  const admin = new pg.Client({ connectionString: stack.state.databaseUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${database}`);
  } finally {
    await admin.end();
  }
  const url = new URL(stack.state.databaseUrl);
  url.pathname = `/${database}`;
  const sql = new pg.Pool({ connectionString: url.toString(), max: 1 });
  const processes: BenchProcess[] = [];
  for (let i = 1; i <= consumers; i++) {
    const port = await freePort();
    processes.push(
      new BenchProcess({
        name: `drain-totals-${i}`,
        // Compiled, as the cluster's own consumers run.
        entry: 'dist/totals/main.js',
        env: {
          ...kafkaClientEnv(stack.state),
          DATABASE_URL: url.toString(),
          TOTALS_GROUP_ID: `bench-drain-${consumers}-${options.runId}`,
          TOTALS_HTTP_PORT: String(port),
        },
        isReady: httpReady(`http://127.0.0.1:${port}/readyz`),
      }),
    );
  }
  const stopAll = () => Promise.all(processes.map((consumer) => consumer.stop()));
  options.onCleanUp(stopAll);
  const appliedCount = async () => {
    try {
      return Number((await sql.query<{ count: string }>('SELECT count::text FROM totals.total WHERE id = 1')).rows[0]!.count);
    } catch (error) {
      if ((error as { code?: string }).code === '42P01') return 0; // the consumers have not made their schema yet
      throw error;
    }
  };
  try {
    const infraCpu = () => ({ postgres: sum(stack.state, 'postgres'), kafka: sum(stack.state, 'kafka-broker') });
    const infra0 = infraCpu();
    const machine0 = machineBusyCpuSeconds();
    const startMs = performance.now();
    let startFailure: unknown;
    const started = Promise.all(processes.map((consumer) => consumer.start(120_000)));
    started.catch((error: unknown) => (startFailure = error)); // awaited below, after the samples
    const samples: CountSample[] = [];
    for (;;) {
      const count = await appliedCount();
      const consumersCpuSeconds = processes.reduce((total, consumer) => total + (consumer.running ? cpuSeconds(consumer.pid) : 0), 0);
      samples.push({ atMs: performance.now(), count, cpuSeconds: consumersCpuSeconds });
      if (count >= backlog) break;
      if (startFailure) throw startFailure;
      if (performance.now() - startMs > 600_000) throw new Error(`${consumers} consumer(s) did not drain ${backlog} events within 10 minutes`);
      await sleep(100);
    }
    await started;
    const consumersCpu = processes.reduce((total, consumer) => total + cpuSeconds(consumer.pid), 0);
    const infra1 = infraCpu();
    const machineCores = (machineBusyCpuSeconds() - machine0) / ((performance.now() - startMs) / 1000);
    const rates = drainRates(samples, backlog, startMs);
    const perEvent = (seconds: number) => round((seconds * 1000) / backlog, 3);
    const cpu = { consumers: perEvent(consumersCpu), postgres: perEvent(infra1.postgres - infra0.postgres), kafka: perEvent(infra1.kafka - infra0.kafka) };
    return {
      consumers,
      backlog,
      events_per_second: round(rates.eventsPerSecond, 0),
      steady_events_per_second: round(rates.steadyEventsPerSecond, 0),
      first_applied_after_seconds: round(rates.firstAppliedAfterSeconds, 2),
      seconds_including_start: round(rates.totalSeconds, 2),
      cpu_ms_per_event: { ...cpu, all: round(cpu.consumers + cpu.postgres + cpu.kafka, 3) },
      steady_consumer_cpu_ms_per_event: round(rates.steadyCpuMsPerEvent, 3),
      machine_cores_busy: round(machineCores),
    };
  } finally {
    await stopAll();
    await sql.end();
  }
}

/** CPU seconds of the run state's components of one role, with their children. */
function sum(state: ClusterStack['state'], role: 'postgres' | 'kafka-broker'): number {
  return state.components
    .filter((component) => (role === 'postgres' ? component.role.startsWith('postgres') : component.role === role))
    .reduce((total, component) => total + (component.pid === null ? 0 : treeCpuSeconds(component.pid)), 0);
}
