// `npm run bench [-- --quick] [--cpu-prof] [--connections N] [--concurrency N] [--vus N] [--kafka-os-flush] [--cluster] [--relay debezium] [--pg-set name=value]... [--history N] [--retention-cycle]`
//
// One run, one machine, one load generator (ghz, a Go gRPC generator, tools/bench/ghz-load.ts) against:
//   R1  a bare grpc-js server with Summa's proto that answers Add in memory (the ceiling);
//   P   the whole pipeline (calculator → PostgreSQL outbox → relay → Kafka → totals) as real
//       processes on an embedded PostgreSQL and Kafka in a temp dir;
//   CDC with --relay debezium, P once more with change data capture (Kafka Connect + Debezium) in
//       place of the relay, same generator and settings (cdc-phase.ts);
//   C   with --cluster, `npm start -- --cluster` behind nginx, and the apply throughput of 1 and
//       3 totals consumers draining a backlog (cluster-phase.ts; still k6, --vus callers).
// Then, over HTTP, POST /v1/sums on P's calculator against a bare Fastify echo server, with vegeta
// for both (http-phase.ts).
// With --history N, P again after N events of history were bulk-loaded (history-phase.ts); with
// --retention-cycle (and --history), the kept tables' size across a retention cycle of short
// windows (retention-cycle.ts).
// Prints a table and writes tools/bench/results/latest.json.
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startKafkaBroker, type KafkaBroker } from '../local-stack/kafka-broker.ts';
import { startPostgresServer, type PostgresServer } from '../local-stack/postgres-server.ts';
import { runGhz } from './ghz-load.ts';
import { freePort } from '../lib/free-port.ts';
import { repoRoot } from '../lib/paths.ts';
import { SERVICE_NODE_FLAGS } from '../lib/service-node-flags.ts';
import { appliedEvents } from './applied-events.ts';
import { BenchProcess, httpReady } from './bench-process.ts';
import { runCdcPhase, type CdcFigures } from './cdc-phase.ts';
import { runClusterPhase, type ClusterFigures } from './cluster-phase.ts';
import { runHttpPhase } from './http-phase.ts';
import { JIT_COMPILER_THREADS, warmUntilJitSettles } from './broker-warmup.ts';
import { cpuSeconds, peakRssMb, processTree, residentMb, threadsCpuSeconds, treeCpuSeconds } from './process-stats.ts';
import { measureIdleVisibility } from './idle-latency.ts';
import { kafkaBatchingBetween, readKafkaBatching } from './kafka-batching.ts';
import { benchCleanups } from './cleanups.ts';
import { applyPgSettings, parsePgSettings } from './pg-settings.ts';
import { fsyncsPerRequestBySource, walFsyncsBySourceReader, type WalFsyncsBySource } from './wal-fsyncs.ts';
import { pinnedTool } from '../lib/tools.ts';
import { parseEventCount } from './history-load.ts';
import { printHistoryTable, runHistoryPhase, type HistoryFigures } from './history-phase.ts';
import { printRetentionTable, runRetentionCycle, type RetentionCycleFigures } from './retention-cycle.ts';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    // R1 and P's callers (ghz): calls in flight at once, over this many HTTP/2 connections.
    connections: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '200' },
    // C's callers (k6 VUs).
    vus: { type: 'string', default: '64' },
    // Kafka as it is by default, flushing to disk when the OS does: measures what flushing each
    // record before its ack (the local broker's setting) costs.
    'kafka-os-flush': { type: 'boolean', default: false },
    cluster: { type: 'boolean', default: false },
    // `debezium` adds the CDC phase: P with Kafka Connect in place of the relay (the poller's P stays).
    relay: { type: 'string', default: 'poller' },
    'pg-set': { type: 'string', multiple: true, default: [] },
    // Events of history to load before P runs again (20000000, 20_000_000 or 20e6).
    history: { type: 'string' },
    'retention-cycle': { type: 'boolean', default: false },
  },
});
const HISTORY_EVENTS = flags.history === undefined ? undefined : parseEventCount(flags.history);
const RETENTION_CYCLE = flags['retention-cycle'] || HISTORY_EVENTS !== undefined;
if (flags.relay !== 'poller' && flags.relay !== 'debezium') throw new Error(`--relay must be poller or debezium, got ${flags.relay}`);
const pgSettings = parsePgSettings(flags['pg-set']);
const VUS = Number(flags.vus);
if (!Number.isInteger(VUS) || VUS < 1) throw new Error(`--vus must be a positive whole number, got ${flags.vus}`);
const CALLERS = { connections: Number(flags.connections), concurrency: Number(flags.concurrency) };
for (const [name, value] of Object.entries(CALLERS)) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive whole number, got ${flags[name as keyof typeof CALLERS]}`);
}
/** Seconds each service is left idle after it is ready, before its resident memory is read. */
const REST_SECONDS = 5;
const plan = flags.quick
  ? { windowSeconds: 8, warmupSeconds: 2, backlog: 20_000 }
  : { windowSeconds: 20, warmupSeconds: 4, backlog: 100_000 };
/** Busy backends report I/O statistics at most once a second, idle ones after 10 s. */
const STATS_FLUSH_MS = 11_500;
const RESULTS_DIR = path.join(repoRoot, 'tools', 'bench', 'results');
const PROFILE_DIR = path.join(repoRoot, '.data', 'profiles');

const log = (message: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (value: number, digits = 2) => Number(value.toFixed(digits));
const loadAverage = () => os.loadavg().map((value) => round(value));

const { cleanups, cleanUp } = benchCleanups(log);

/** The command line's options as given, for the record of the run. */
function benchArguments(): string {
  const given = [
    flags.quick && '--quick',
    flags.connections !== '10' && `--connections ${flags.connections}`,
    flags.concurrency !== '200' && `--concurrency ${flags.concurrency}`,
    flags['vus'] !== '64' && `--vus ${flags.vus}`,
    flags['kafka-os-flush'] && '--kafka-os-flush',
    flags.cluster && '--cluster',
    flags.relay !== 'poller' && `--relay ${flags.relay}`,
    ...pgSettings.map(([name, value]) => `--pg-set ${name}=${value}`),
    HISTORY_EVENTS !== undefined && `--history ${HISTORY_EVENTS}`,
    flags['retention-cycle'] && '--retention-cycle',
  ].filter(Boolean);
  return given.length > 0 ? ` -- ${given.join(' ')}` : '';
}

interface Snapshot {
  walFsyncs: number;
  walFsyncsBySource: WalFsyncsBySource;
  cpu: Record<string, number>;
  /** CPU seconds of the broker's JIT compiler threads, part of `cpu.kafka`. */
  kafkaJitSeconds: number;
}

/** P's warm-up rounds at most (broker-warmup.ts). */
const MAX_WARMUP_ROUNDS = 20;

async function main(): Promise<void> {
  const ghz = await pinnedTool('ghz');
  const k6 = flags.cluster ? await pinnedTool('k6') : '';
  if (flags['cpu-prof']) await mkdir(PROFILE_DIR, { recursive: true });
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-bench-'));
  // PostgreSQL runs as its own user when started as root, and must reach its cluster folder.
  await chmod(workDir, 0o755);
  cleanups.push(() => rm(workDir, { recursive: true, force: true }));
  const runId = Date.now().toString(36);
  const startedAt = new Date();
  const loadAtStart = loadAverage();

  // ---- R1: the ceiling --------------------------------------------------------------------
  log('R1: starting the bare gRPC echo server');
  const echoPort = await freePort();
  const echo = new BenchProcess({
    name: 'echo',
    entry: 'tools/bench/echo-server.ts',
    env: { ECHO_PORT: String(echoPort) },
    isReady: async (output) => output.includes('listening'),
    cpuProfileDir: flags['cpu-prof'] ? PROFILE_DIR : undefined,
  });
  cleanups.push(() => echo.stop());
  await echo.start();
  const echoTarget = `127.0.0.1:${echoPort}`;
  await runGhz(ghz, echoTarget, { mode: 'closed', ...CALLERS, durationSeconds: plan.warmupSeconds });
  log(`R1: closed loop, ${CALLERS.concurrency} callers on ${CALLERS.connections} connections, ${plan.windowSeconds}s`);
  const echoCpu0 = cpuSeconds(echo.pid);
  const r1Closed = await runGhz(ghz, echoTarget, { mode: 'closed', ...CALLERS, durationSeconds: plan.windowSeconds });
  const echoCpu1 = cpuSeconds(echo.pid);
  log(`R1: ${r1Closed.ackedPerSecond.toFixed(0)} Add/s; open loop at 50% (${(r1Closed.ackedPerSecond / 2).toFixed(0)}/s)`);
  const r1Open = await runGhz(ghz, echoTarget, { mode: 'open', rate: r1Closed.ackedPerSecond / 2, durationSeconds: plan.windowSeconds, connections: CALLERS.connections });
  const echoRss = peakRssMb(echo.pid);
  await echo.stop();

  // ---- P: the pipeline ---------------------------------------------------------------------
  log('P: starting PostgreSQL and Kafka');
  const postgres: PostgresServer = await startPostgresServer({ dataDir: path.join(workDir, 'postgres'), port: await freePort() });
  cleanups.push(() => postgres.stop());
  const kafka: KafkaBroker = await startKafkaBroker({ dataDir: path.join(workDir, 'kafka'), port: 0, flushEveryRecord: !flags['kafka-os-flush'] });
  cleanups.push(() => kafka.stop());
  await postgres.ensureDatabase('summa_bench');
  const databaseUrl = postgres.url('summa_bench');
  const sql = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  cleanups.push(() => sql.end());
  await applyPgSettings(sql, pgSettings);

  const [grpcPort, calculatorPort, relayPort, totalsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const env = {
    DATABASE_URL: databaseUrl,
    KAFKA_BROKERS: kafka.brokers,
    KAFKA_TOPIC: 'bench.sums',
    TOTALS_GROUP_ID: 'bench-totals',
    CALCULATOR_GRPC_PORT: String(grpcPort),
    CALCULATOR_HTTP_PORT: String(calculatorPort),
    RELAY_HTTP_PORT: String(relayPort),
    TOTALS_HTTP_PORT: String(totalsPort),
  };
  const service = (name: 'calculator' | 'relay' | 'totals', port: number, extraEnv: Record<string, string> = {}) =>
    new BenchProcess({
      name,
      // As they ship and as `npm start` runs them: compiled (`npm run bench` builds dist/ first).
      entry: `dist/${name}/main.js`,
      nodeFlags: SERVICE_NODE_FLAGS,
      env: { ...env, ...extraEnv },
      isReady: httpReady(`http://127.0.0.1:${port}/readyz`),
      cpuProfileDir: flags['cpu-prof'] ? PROFILE_DIR : undefined,
    });
  const calculator = service('calculator', calculatorPort);
  const relay = service('relay', relayPort);
  const totals = service('totals', totalsPort);
  cleanups.push(() => Promise.all([calculator.stop(), relay.stop(), totals.stop()]));
  log('P: starting the calculator, relay and totals services');
  await calculator.start();
  await Promise.all([relay.start(), totals.start()]);
  await sleep(REST_SECONDS * 1000);
  const rssAtRestMb = {
    calculator: round(residentMb(calculator.pid), 1),
    relay: round(residentMb(relay.pid), 1),
    totals: round(residentMb(totals.pid), 1),
  };
  log(`P: resident memory after ${REST_SECONDS}s at rest: ${JSON.stringify(rssAtRestMb)} MB`);
  const postmaster = await postgres.pid();
  const target = `127.0.0.1:${grpcPort}`;

  const { appliedCount, waitApplied, endToEnd, appliedBetween } = appliedEvents(sql);
  const walFsyncs = await walFsyncCounter(sql);
  const walFsyncsBySource = (await walFsyncsBySourceReader(sql)) ?? (async () => ({}));
  const snapshot = async (): Promise<Snapshot> => {
    await sleep(STATS_FLUSH_MS);
    return {
      walFsyncs: await walFsyncs(),
      walFsyncsBySource: await walFsyncsBySource(),
      cpu: {
        calculator: cpuSeconds(calculator.pid),
        relay: cpuSeconds(relay.pid),
        totals: cpuSeconds(totals.pid),
        postgres: treeCpuSeconds(postmaster),
        kafka: cpuSeconds(kafka.pid),
      },
      kafkaJitSeconds: threadsCpuSeconds(kafka.pid, JIT_COMPILER_THREADS),
    };
  };

  let expected = 0;
  // Each round a closed loop and an open loop at half its rate, the two shapes measured below.
  log(`P: warming up, rounds of ${plan.warmupSeconds}s closed and ${plan.warmupSeconds}s open loop until the broker's JIT compilers settle`);
  const warmup = await warmUntilJitSettles(kafka.pid, MAX_WARMUP_ROUNDS, async () => {
    const closed = await runGhz(ghz, target, { mode: 'closed', ...CALLERS, durationSeconds: plan.warmupSeconds });
    const open = await runGhz(ghz, target, { mode: 'open', rate: closed.ackedPerSecond / 2, durationSeconds: plan.warmupSeconds, connections: CALLERS.connections });
    return closed.acked + open.acked;
  });
  expected += warmup.acked;
  log(`P: warmed up in ${warmup.rounds} round(s); JIT ${(warmup.lastJitShare * 100).toFixed(0)}% of the broker's CPU in the last`);
  await waitApplied(expected);
  log('P: idle visibility, one Add at a time');
  const idle = await measureIdleVisibility({ grpcTarget: target, totalsUrl: `http://127.0.0.1:${totalsPort}`, samples: 50, gapMs: 200, sql });
  expected += idle.samples + 1; // and its first, unmeasured Add
  const s0 = await snapshot();
  const kafkaCounts = () => readKafkaBatching(`http://127.0.0.1:${relayPort}`, `http://127.0.0.1:${totalsPort}`);
  const batching0 = await kafkaCounts();

  log(`P: closed loop, ${CALLERS.concurrency} callers on ${CALLERS.connections} connections, ${plan.windowSeconds}s`);
  const closedFrom = new Date();
  const pClosed = await runGhz(ghz, target, { mode: 'closed', ...CALLERS, durationSeconds: plan.windowSeconds });
  const closedTo = new Date();
  expected += pClosed.acked;
  const catchUpSeconds = await waitApplied(expected);
  const kafkaBatching = kafkaBatchingBetween(batching0, await kafkaCounts());
  const closedEndToEnd = await endToEnd(closedFrom, closedTo);
  const appliedPerSecond = (await appliedBetween(closedFrom, closedTo)) / ((closedTo.getTime() - closedFrom.getTime()) / 1000);
  // The consumer kept up when events were applied within a second of acceptance all along.
  const keptUp = catchUpSeconds < 1 && closedEndToEnd.p99 < 1000;
  const pipelineRps = keptUp ? pClosed.ackedPerSecond : Math.min(pClosed.ackedPerSecond, appliedPerSecond);
  const s1 = await snapshot();

  log(`P: ${pClosed.ackedPerSecond.toFixed(0)} Add/s acknowledged, consumer ${keptUp ? 'kept up' : `fell behind (applied ${appliedPerSecond.toFixed(0)}/s)`}; open loop at 50% of ${pipelineRps.toFixed(0)}/s`);
  const openFrom = new Date();
  const pOpen = await runGhz(ghz, target, { mode: 'open', rate: pipelineRps / 2, durationSeconds: plan.windowSeconds, connections: CALLERS.connections });
  const openTo = new Date();
  expected += pOpen.acked;
  await waitApplied(expected);
  const openEndToEnd = await endToEnd(openFrom, openTo);
  const s2 = await snapshot();

  log(`P: backlog drain — relay stopped, queueing ${plan.backlog} events`);
  const relayRssFirst = peakRssMb(relay.pid);
  await relay.stop();
  const fill = await runGhz(ghz, target, { mode: 'fill', ...CALLERS, requests: plan.backlog });
  expected += fill.acked;
  const base = await appliedCount();
  const { rows: outbox } = await sql.query<{ n: string }>('SELECT count(*)::text AS n FROM calculator.outbox');
  log(`P: ${outbox[0]!.n} events queued; restarting the relay`);
  const restartAt = performance.now();
  await relay.start();
  // Throughput from the first applied event of the backlog to the last, so the relay's start-up
  // time is reported apart.
  let firstProgress: { at: number; count: number } | undefined;
  for (;;) {
    const count = await appliedCount();
    if (!firstProgress && count > base) firstProgress = { at: performance.now(), count };
    if (count >= expected) break;
    if (performance.now() - restartAt > 600_000) throw new Error('the backlog did not drain within 10 minutes');
    await sleep(20);
  }
  const drainedAt = performance.now();
  const drainRps = firstProgress ? (expected - firstProgress.count) / Math.max(0.001, (drainedAt - firstProgress.at) / 1000) : NaN;
  const drainTotalSeconds = (drainedAt - restartAt) / 1000;

  const rssMb = {
    echo: round(echoRss, 1),
    calculator: round(peakRssMb(calculator.pid), 1),
    relay: round(Math.max(relayRssFirst, peakRssMb(relay.pid)), 1),
    totals: round(peakRssMb(totals.pid), 1),
  };
  const infraRssMb = {
    kafka: round(peakRssMb(kafka.pid), 1),
    postgres_largest_process: round(Math.max(...processTree(postmaster).map(peakRssMb)), 1),
  };

  // After peak RSS (a high-water mark) is read, so that it stays the gRPC phases' figure.
  const http = await runHttpPhase({
    calculatorHttpPort: calculatorPort,
    workers: CALLERS.concurrency,
    durationSeconds: plan.windowSeconds,
    warmupSeconds: plan.warmupSeconds,
    onAcknowledged: (count) => (expected += count),
    log,
    onCleanUp: (cleanup) => cleanups.push(cleanup),
    cpuProfileDir: flags['cpu-prof'] ? PROFILE_DIR : undefined,
  });
  await waitApplied(expected);
  const applied = await appliedCount();
  if (applied !== expected) throw new Error(`${applied} events applied, but ${expected} sums were acknowledged`);
  const history: HistoryFigures | undefined =
    HISTORY_EVENTS === undefined
      ? undefined
      : await runHistoryPhase({ ghz, target, callers: CALLERS, plan, sql, events: HISTORY_EVENTS, empty: { pipelineRps, openRate: pipelineRps / 2 }, log });

  const pgVersion = (await sql.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
  await Promise.all([calculator.stop(), relay.stop(), totals.stop()]);

  let cdc: CdcFigures | undefined;
  if (flags.relay === 'debezium') {
    cdc = await runCdcPhase({
      ghz,
      target,
      totalsUrl: `http://127.0.0.1:${totalsPort}`,
      callers: CALLERS,
      plan,
      databaseUrl,
      sql,
      brokers: kafka.brokers,
      kafkaPid: kafka.pid,
      postmasterPid: postmaster,
      workDir,
      service: (name, extraEnv) => service(name, name === 'calculator' ? calculatorPort : totalsPort, extraEnv),
      snapshotDelayMs: STATS_FLUSH_MS,
      restSeconds: REST_SECONDS,
      log,
      onCleanUp: (cleanup) => cleanups.push(cleanup),
    });
  }
  let retentionCycle: RetentionCycleFigures | undefined;
  if (RETENTION_CYCLE) {
    await postgres.ensureDatabase('summa_retention');
    const retentionSql = new pg.Pool({ connectionString: postgres.url('summa_retention'), max: 2 });
    cleanups.push(() => retentionSql.end());
    retentionCycle = await runRetentionCycle({
      ghz,
      target,
      calculatorUrl: `http://127.0.0.1:${calculatorPort}`,
      totalsUrl: `http://127.0.0.1:${totalsPort}`,
      service: (name, extraEnv) => service(name, { calculator: calculatorPort, relay: relayPort, totals: totalsPort }[name], extraEnv),
      databaseUrl: postgres.url('summa_retention'),
      sql: retentionSql,
      rate: 200,
      windowSeconds: 20,
      periodSeconds: 5,
      steadyWindows: flags.quick ? 2 : 3,
      log,
      onCleanUp: (cleanup) => cleanups.push(cleanup),
    });
  }
  const loadAtEnd = loadAverage();

  let cluster: ClusterFigures | undefined;
  if (flags.cluster) {
    // P's PostgreSQL and Kafka would only take memory and CPU from the cluster.
    await sql.end();
    await kafka.stop();
    await postgres.stop();
    cluster = await runClusterPhase({ k6, runId, vus: VUS, plan, workDir, log, onCleanUp: (cleanup) => cleanups.push(cleanup) });
  }

  const jitPerRequest = (from: Snapshot, to: Snapshot, requests: number) => round(((to.kafkaJitSeconds - from.kafkaJitSeconds) * 1000) / requests, 3);
  const perRequest = (from: Snapshot, to: Snapshot, requests: number) => {
    const ms = Object.fromEntries(Object.keys(to.cpu).map((name) => [name, round(((to.cpu[name]! - from.cpu[name]!) * 1000) / requests, 3)]));
    return { ...ms, all: round(Object.values(ms).reduce((a, b) => a + b, 0), 3) };
  };

  const results = {
    date: startedAt.toISOString(),
    command: `npm run bench${benchArguments()}`,
    machine: {
      cpus: os.cpus().length,
      cpu_model: os.cpus()[0]?.model ?? 'unknown',
      memory_gb: round(os.totalmem() / 2 ** 30, 1),
      kernel: os.release(),
      node: process.version,
      postgres: pgVersion,
      load_average_at_start: loadAtStart,
      load_average_at_end: loadAtEnd,
    },
    plan: {
      ...plan,
      connections: CALLERS.connections,
      concurrency: CALLERS.concurrency,
      ...(cluster ? { vus: VUS } : {}),
      load_generator: `ghz (tools/bench/ghz-load.ts), gRPC, ${CALLERS.concurrency} callers on ${CALLERS.connections} connections, same for R1 and P${cluster ? '; C: k6 (tools/load/k6/add.js)' : ''}`,
    },
    echo_rps: round(r1Closed.ackedPerSecond, 0),
    pipeline_rps: round(pipelineRps, 0),
    ratio: round(pipelineRps / r1Closed.ackedPerSecond, 3),
    ack_p50_ms: round(pOpen.p50Ms),
    ack_p99_ms: round(pOpen.p99Ms),
    echo_ack_p50_ms: round(r1Open.p50Ms),
    echo_ack_p99_ms: round(r1Open.p99Ms),
    e2e_p50_ms: round(openEndToEnd.p50),
    e2e_p99_ms: round(openEndToEnd.p99),
    idle_e2e_p50_ms: idle.p50Ms,
    idle_e2e_p99_ms: idle.p99Ms,
    drain_rps: round(drainRps, 0),
    fsyncs_per_request: round((s2.walFsyncs - s1.walFsyncs) / pOpen.acked, 4),
    records_per_produce_request: kafkaBatching.records_per_produce_request,
    records_per_fetch: kafkaBatching.records_per_fetch,
    rss_mb: rssMb,
    rss_at_rest_mb: rssAtRestMb,
    cpu_ms_per_request: perRequest(s0, s1, pClosed.acked),
    generator_cpu_ms_per_request: round(pClosed.generatorCpuMsPerRequest, 4),
    http_echo_rps: http.http_echo_rps,
    http_pipeline_rps: http.http_pipeline_rps,
    http_ratio: http.http_ratio,
    details: {
      r1_closed: r1Closed,
      r1_open: r1Open,
      echo_cpu_ms_per_request: round(((echoCpu1 - echoCpu0) * 1000) / r1Closed.acked, 3),
      r1_generator_cpu_ms_per_request: round(r1Closed.generatorCpuMsPerRequest, 4),
      p_closed: pClosed,
      p_closed_consumer_kept_up: keptUp,
      p_closed_applied_rps: round(appliedPerSecond, 0),
      p_closed_catch_up_seconds: round(catchUpSeconds, 2),
      p_closed_e2e_ms: closedEndToEnd,
      p_open: pOpen,
      p_open_e2e_ms: openEndToEnd,
      idle_e2e: idle,
      fsyncs_per_request_at_saturation: round((s1.walFsyncs - s0.walFsyncs) / pClosed.acked, 4),
      fsyncs_per_request_by_source: fsyncsPerRequestBySource(s1.walFsyncsBySource, s2.walFsyncsBySource, pOpen.acked),
      fsyncs_per_request_by_source_at_saturation: fsyncsPerRequestBySource(s0.walFsyncsBySource, s1.walFsyncsBySource, pClosed.acked),
      postgres_settings: Object.fromEntries(pgSettings),
      cpu_ms_per_request_at_saturation: perRequest(s0, s1, pClosed.acked),
      cpu_ms_per_request_at_half_load: perRequest(s1, s2, pOpen.acked),
      // Part of Kafka's figures above: the broker's JIT compilers, still at work on a broker started
      // minutes before (a long-running broker compiled its hot paths long ago).
      p_warmup: { rounds: warmup.rounds, last_round_jit_share: round(warmup.lastJitShare, 3) },
      kafka_jit_cpu_ms_per_request: { at_saturation: jitPerRequest(s0, s1, pClosed.acked), at_half_load: jitPerRequest(s1, s2, pOpen.acked) },
      kafka_batching_at_saturation: kafkaBatching,
      drain: { backlog: fill.acked, fill_rps: round(fill.ackedPerSecond, 0), seconds_including_relay_start: round(drainTotalSeconds, 2) },
      infra_rss_mb: infraRssMb,
      http: http.details,
    },
    ...(cdc ? { cdc } : {}),
    ...(cluster ? { cluster } : {}),
    ...(history ?? {}),
    ...(retentionCycle ? { retention_cycle: retentionCycle } : {}),
  };

  await mkdir(RESULTS_DIR, { recursive: true });
  await writeFile(path.join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  printTable(results);
  if (cdc) printCdcTable(results, cdc);
  if (cluster) printClusterTable(results, cluster);
  if (history) printHistoryTable(results, history);
  if (retentionCycle) printRetentionTable(retentionCycle);
  if (flags['cpu-prof']) log(`CPU profiles: ${path.relative(repoRoot, PROFILE_DIR)}/*.cpuprofile (open in Chrome DevTools → Performance)`);
}

/** pg_stat_wal.wal_sync up to PostgreSQL 17; from 18 on, WAL fsyncs are in pg_stat_io (object 'wal'). */
async function walFsyncCounter(sql: pg.Pool): Promise<() => Promise<number>> {
  const { rows } = await sql.query<Record<string, unknown>>('SELECT * FROM pg_stat_wal');
  if (rows[0] && 'wal_sync' in rows[0]) {
    return async () => Number((await sql.query<{ n: string }>('SELECT wal_sync::text AS n FROM pg_stat_wal')).rows[0]!.n);
  }
  return async () =>
    Number((await sql.query<{ n: string }>(`SELECT coalesce(sum(fsyncs), 0)::text AS n FROM pg_stat_io WHERE object = 'wal'`)).rows[0]!.n);
}

function printTable(r: {
  echo_rps: number;
  pipeline_rps: number;
  ratio: number;
  ack_p50_ms: number;
  ack_p99_ms: number;
  echo_ack_p50_ms: number;
  echo_ack_p99_ms: number;
  e2e_p50_ms: number;
  e2e_p99_ms: number;
  idle_e2e_p50_ms: number;
  idle_e2e_p99_ms: number;
  drain_rps: number;
  fsyncs_per_request: number;
  records_per_produce_request: number;
  records_per_fetch: number;
  rss_mb: Record<string, number>;
  rss_at_rest_mb: Record<string, number>;
  cpu_ms_per_request: Record<string, number>;
  generator_cpu_ms_per_request: number;
  http_echo_rps: number;
  http_pipeline_rps: number;
  http_ratio: number;
  details: {
    cpu_ms_per_request_at_half_load: Record<string, number>;
    kafka_jit_cpu_ms_per_request: { at_saturation: number; at_half_load: number };
    echo_cpu_ms_per_request: number;
    r1_generator_cpu_ms_per_request: number;
    p_closed_consumer_kept_up: boolean;
  };
}): void {
  const rows: [string, string, string, string][] = [
    ['Add/s (closed loop, saturated)', String(r.echo_rps), String(r.pipeline_rps), `P/R1 = ${r.ratio} (target ≥ 0.6)`],
    ['ack latency p50 @50% load (ms)', String(r.echo_ack_p50_ms), String(r.ack_p50_ms), ''],
    ['ack latency p99 @50% load (ms)', String(r.echo_ack_p99_ms), String(r.ack_p99_ms), `Δ ${round(r.ack_p99_ms - r.echo_ack_p99_ms)} ms`],
    ['end-to-end p50 / p99 (ms)', '', `${r.e2e_p50_ms} / ${r.e2e_p99_ms}`, r.details.p_closed_consumer_kept_up ? 'consumer kept up' : 'consumer fell behind at saturation'],
    ['idle Add ack → GET /total p50 / p99 (ms)', '', `${r.idle_e2e_p50_ms} / ${r.idle_e2e_p99_ms}`, 'target ≤ 10 / 20'],
    ['backlog drain (events/s)', '', String(r.drain_rps), ''],
    ['WAL fsyncs per request', '', String(r.fsyncs_per_request), 'target ≤ 0.15'],
    ['records per produce request / fetch (saturated)', '', `${r.records_per_produce_request} / ${r.records_per_fetch}`, 'relay → Kafka / Kafka → totals'],
    ['CPU ms per request', String(r.details.echo_cpu_ms_per_request), String(r.details.cpu_ms_per_request_at_half_load.all), JSON.stringify(r.details.cpu_ms_per_request_at_half_load)],
    ['CPU ms per request, saturated', '', String(r.cpu_ms_per_request.all), `target ≤ 0.6; ${JSON.stringify(r.cpu_ms_per_request)}`],
    [
      "of which Kafka's JIT compilers, saturated / @50%",
      '',
      `${r.details.kafka_jit_cpu_ms_per_request.at_saturation} / ${r.details.kafka_jit_cpu_ms_per_request.at_half_load}`,
      'a broker started for the benchmark still compiles its hot paths',
    ],
    ['generator (ghz) CPU ms per request, saturated', String(r.details.r1_generator_cpu_ms_per_request), String(r.generator_cpu_ms_per_request), ''],
    ['RSS at rest (MB)', '', `calc ${r.rss_at_rest_mb.calculator}, relay ${r.rss_at_rest_mb.relay}, totals ${r.rss_at_rest_mb.totals}`, 'target ≤ 80 each'],
    ['POST /v1/sums/s (vegeta, closed loop)', String(r.http_echo_rps), String(r.http_pipeline_rps), `P/echo = ${r.http_ratio} (bare Fastify echo)`],
    ['peak RSS (MB)', String(r.rss_mb.echo), `calc ${r.rss_mb.calculator}, relay ${r.rss_mb.relay}, totals ${r.rss_mb.totals}`, 'target ≤ 150 each'],
  ];
  const header: [string, string, string, string] = ['', 'R1 (echo)', 'P (pipeline)', ''];
  const widths = [0, 1, 2].map((i) => Math.max(...[header, ...rows].map((row) => row[i]!.length)));
  for (const row of [header, ...rows]) {
    console.log(`${row[0].padEnd(widths[0]!)}  ${row[1].padStart(widths[1]!)}  ${row[2].padStart(widths[2]!)}  ${row[3]}`);
  }
  console.log(`\nwritten to tools/bench/results/latest.json`);
}

/** The cluster's figures next to the single node's (P) of the same run. */
function printClusterTable(
  p: { pipeline_rps: number; ack_p50_ms: number; ack_p99_ms: number; e2e_p50_ms: number; e2e_p99_ms: number; drain_rps: number; details: { cpu_ms_per_request_at_half_load: Record<string, number>; cpu_ms_per_request_at_saturation: Record<string, number> } },
  c: ClusterFigures,
): void {
  const [one, three] = c.details.drain;
  const rows: [string, string, string, string][] = [
    ['Add/s (closed loop, saturated)', String(p.pipeline_rps), String(c.cluster_rps), c.consumer_kept_up ? 'consumers kept up' : 'consumers fell behind at saturation'],
    ['ack latency p50 / p99 @50% load (ms)', `${p.ack_p50_ms} / ${p.ack_p99_ms}`, `${c.ack_p50_ms} / ${c.ack_p99_ms}`, ''],
    ['end-to-end p50 / p99 @50% load (ms)', `${p.e2e_p50_ms} / ${p.e2e_p99_ms}`, `${c.e2e_p50_ms} / ${c.e2e_p99_ms}`, ''],
    ['CPU ms per request, saturated', String(p.details.cpu_ms_per_request_at_saturation.all), String(c.cpu_ms_per_request_at_saturation.all), JSON.stringify(c.cpu_ms_per_request_at_saturation)],
    ['CPU ms per request @50% load', String(p.details.cpu_ms_per_request_at_half_load.all), String(c.cpu_ms_per_request_at_half_load.all), JSON.stringify(c.cpu_ms_per_request_at_half_load)],
    ['cores busy, idle', '', String(c.idle_cores_busy.all), JSON.stringify(c.idle_cores_busy)],
    ['cores busy, saturated (ours / machine)', '', `${c.cores_busy_at_saturation.all} / ${c.machine_cores_busy_at_saturation}`, JSON.stringify(c.cores_busy_at_saturation)],
    ['drain, 1 consumer (events/s)', `${p.drain_rps} (relay → totals)`, `${one!.events_per_second} (steady ${one!.steady_events_per_second})`, `${one!.backlog} events; consumer CPU ${one!.steady_consumer_cpu_ms_per_event} ms/event; machine ${one!.machine_cores_busy} cores busy`],
    ['drain, 3 consumers (events/s)', '', `${three!.events_per_second} (steady ${three!.steady_events_per_second})`, `consumers' CPU ${three!.steady_consumer_cpu_ms_per_event} ms/event; machine ${three!.machine_cores_busy} cores busy`],
  ];
  const header: [string, string, string, string] = ['', 'P (single node)', `C (cluster, Kafka ${c.topology.kafka_brokers} broker(s), ${c.topology.kafka_security})`, ''];
  const widths = [0, 1, 2].map((i) => Math.max(...[header, ...rows].map((row) => row[i]!.length)));
  console.log('');
  for (const row of [header, ...rows]) {
    console.log(`${row[0].padEnd(widths[0]!)}  ${row[1].padStart(widths[1]!)}  ${row[2].padStart(widths[2]!)}  ${row[3]}`);
  }
}

let exitCode = 0;
try {
  await main();
} catch (error) {
  console.error(`benchmark failed: ${error instanceof Error ? error.stack : String(error)}`);
  exitCode = 1;
}
await cleanUp();
process.exit(exitCode);

function printCdcTable(
  p: { pipeline_rps: number; ack_p50_ms: number; ack_p99_ms: number; e2e_p50_ms: number; e2e_p99_ms: number; idle_e2e_p50_ms: number; cpu_ms_per_request: Record<string, number>; rss_mb: Record<string, number> },
  c: CdcFigures,
): void {
  console.log('\nP with the poller relay, then with change data capture (--relay debezium)');
  console.table([
    ['Add/s (closed loop)', p.pipeline_rps, c.pipeline_rps],
    ['ack p50 / p99 ms @50%', `${p.ack_p50_ms} / ${p.ack_p99_ms}`, `${c.ack_p50_ms} / ${c.ack_p99_ms}`],
    ['end-to-end p50 / p99 ms @50%', `${p.e2e_p50_ms} / ${p.e2e_p99_ms}`, `${c.e2e_p50_ms} / ${c.e2e_p99_ms}`],
    ['idle end-to-end p50 ms', p.idle_e2e_p50_ms, c.idle_e2e_p50_ms],
    ['CPU ms per request, saturated', JSON.stringify(p.cpu_ms_per_request), JSON.stringify(c.cpu_ms_per_request)],
    ['peak RSS MB', `relay ${p.rss_mb.relay}`, `kafka_connect ${c.rss_mb.kafka_connect}`],
  ].map(([figure, poller, capture]) => ({ figure, poller, capture })));
}
