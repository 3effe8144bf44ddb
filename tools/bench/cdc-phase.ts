// `npm run bench -- --relay debezium`: phase P once more, on the same PostgreSQL, Kafka, generator and
// settings, with change data capture in place of the relay: the calculator in RELAY_MODE=debezium and
// a Kafka Connect worker with Debezium's connector (tools/local-stack/kafka-connect.ts). Same figures
// under the same names as P's, so that latest.json's `cdc` section reads next to the poller's; the
// CPU per request counts Connect's JVM where P's counts the relay.
import path from 'node:path';
import type pg from 'pg';
import { ensureOutboxPublication } from '../../src/outbox/outbox-capture.ts';
import { outboxConnectorConfig, startKafkaConnect } from '../local-stack/kafka-connect.ts';
import { appliedEvents, type LatencyPercentiles } from './applied-events.ts';
import type { BenchProcess } from './bench-process.ts';
import { runGhz, type Callers, type GhzLoadResult } from './ghz-load.ts';
import { measureIdleVisibility, type IdleVisibility } from './idle-latency.ts';
import { cpuSeconds, peakRssMb, processTree, residentMb, treeCpuSeconds } from './process-stats.ts';

const CONNECTOR = 'summa-outbox';
const SLOT = 'summa_outbox';

export interface CdcPhaseOptions {
  ghz: string;
  /** ghz's target: the calculator's gRPC address. */
  target: string;
  totalsUrl: string;
  callers: Callers;
  plan: { windowSeconds: number; warmupSeconds: number };
  /** P's database (its calculator has migrated the outbox) and pool. */
  databaseUrl: string;
  sql: pg.Pool;
  brokers: string;
  kafkaPid: number;
  postmasterPid: number;
  /** Where Connect's config, logs and cached classpath go. */
  workDir: string;
  /** The calculator and totals services as P runs them, with `env` added. */
  service: (name: 'calculator' | 'totals', env: Record<string, string>) => BenchProcess;
  /** P's wait before each CPU snapshot, so that both count the same idle time. */
  snapshotDelayMs: number;
  restSeconds: number;
  log: (message: string) => void;
  onCleanUp: (cleanup: () => Promise<unknown>) => void;
}

type Cpu = Record<'calculator' | 'kafka_connect' | 'totals' | 'postgres' | 'kafka', number>;

export interface CdcFigures {
  pipeline_rps: number;
  ack_p50_ms: number;
  ack_p99_ms: number;
  e2e_p50_ms: number;
  e2e_p99_ms: number;
  idle_e2e_p50_ms: number;
  idle_e2e_p99_ms: number;
  /** At saturation, as P's `cpu_ms_per_request`; `kafka_connect` is the worker's JVM. */
  cpu_ms_per_request: Cpu & { all: number };
  rss_mb: { calculator: number; totals: number; kafka_connect: number };
  rss_at_rest_mb: { calculator: number; totals: number; kafka_connect: number };
  /** The worker's start until it joined its group, then the connector registered until RUNNING. */
  connect_start_seconds: number;
  connector_running_seconds: number;
  /** Rows in the outbox after the run: RELAY_MODE=debezium leaves none. */
  outbox_rows_after: number;
  details: {
    p_closed: GhzLoadResult;
    p_closed_consumer_kept_up: boolean;
    p_closed_applied_rps: number;
    p_closed_catch_up_seconds: number;
    p_closed_e2e_ms: LatencyPercentiles;
    p_open: GhzLoadResult;
    p_open_e2e_ms: LatencyPercentiles;
    idle_e2e: IdleVisibility;
    cpu_ms_per_request_at_saturation: Cpu & { all: number };
    cpu_ms_per_request_at_half_load: Cpu & { all: number };
    /** WAL the slot still held (bytes) once the last event was applied. */
    slot_retained_wal_bytes_after: number;
  };
}

const round = (value: number, digits = 2) => Number(value.toFixed(digits));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function runCdcPhase(options: CdcPhaseOptions): Promise<CdcFigures> {
  const { ghz, target, callers, plan, sql, log } = options;
  const { appliedCount, waitApplied, endToEnd, appliedBetween } = appliedEvents(sql);
  let expected = await appliedCount();

  log('CDC: starting Kafka Connect with the outbox connector');
  await ensureOutboxPublication(sql);
  const connectStartedAt = performance.now();
  const connect = await startKafkaConnect({ dataDir: path.join(options.workDir, 'kafka-connect'), brokers: options.brokers, groupId: 'bench-connect' });
  options.onCleanUp(() => connect.stop());
  const connectStartSeconds = (performance.now() - connectStartedAt) / 1000;
  const url = new URL(options.databaseUrl);
  const registeredAt = performance.now();
  await connect.putConnector(
    CONNECTOR,
    outboxConnectorConfig({
      database: { host: url.hostname, port: Number(url.port), user: decodeURIComponent(url.username), password: decodeURIComponent(url.password), name: url.pathname.slice(1) },
      slotName: SLOT,
      topicPrefix: 'bench-cdc',
    }),
  );
  await connect.waitUntilRunning(CONNECTOR);
  // The slot must exist before the first write that leaves no outbox row (docs/cdc.md, "Switching").
  for (;;) {
    const { rows } = await sql.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [SLOT]);
    if (rows[0]?.active) break;
    if (performance.now() - registeredAt > 120_000) throw new Error(`the slot ${SLOT} was not streaming within 120 s; see ${connect.logFile}`);
    await sleep(200);
  }
  const connectorRunningSeconds = (performance.now() - registeredAt) / 1000;

  log('CDC: starting the calculator (RELAY_MODE=debezium) and totals services');
  const calculator = options.service('calculator', { RELAY_MODE: 'debezium' });
  const totals = options.service('totals', {});
  options.onCleanUp(() => Promise.all([calculator.stop(), totals.stop()]));
  await calculator.start();
  await totals.start();
  await sleep(options.restSeconds * 1000);
  const connectRss = () => processTree(connect.pid);
  const rssAtRestMb = {
    calculator: round(residentMb(calculator.pid), 1),
    totals: round(residentMb(totals.pid), 1),
    kafka_connect: round(connectRss().reduce((sum, pid) => sum + residentMb(pid), 0), 1),
  };
  log(`CDC: resident memory after ${options.restSeconds}s at rest: ${JSON.stringify(rssAtRestMb)} MB`);

  const snapshot = async (): Promise<Cpu> => {
    await sleep(options.snapshotDelayMs);
    return {
      calculator: cpuSeconds(calculator.pid),
      kafka_connect: treeCpuSeconds(connect.pid),
      totals: cpuSeconds(totals.pid),
      postgres: treeCpuSeconds(options.postmasterPid),
      kafka: cpuSeconds(options.kafkaPid),
    };
  };
  const perRequest = (from: Cpu, to: Cpu, requests: number): Cpu & { all: number } => {
    const ms = Object.fromEntries(Object.keys(to).map((name) => [name, round(((to[name as keyof Cpu] - from[name as keyof Cpu]) * 1000) / requests, 3)])) as Cpu;
    return { ...ms, all: round(Object.values(ms).reduce((a, b) => a + b, 0), 3) };
  };

  log(`CDC: warming up (${plan.warmupSeconds}s)`);
  expected += (await runGhz(ghz, target, { mode: 'closed', ...callers, durationSeconds: plan.warmupSeconds })).acked;
  await waitApplied(expected);
  log('CDC: idle visibility, one Add at a time');
  const idle = await measureIdleVisibility({ grpcTarget: target, totalsUrl: options.totalsUrl, samples: 50, gapMs: 200, sql });
  expected += idle.samples + 1;
  await waitApplied(expected);
  const s0 = await snapshot();

  log(`CDC: closed loop, ${callers.concurrency} callers on ${callers.connections} connections, ${plan.windowSeconds}s`);
  const closedFrom = new Date();
  const closed = await runGhz(ghz, target, { mode: 'closed', ...callers, durationSeconds: plan.windowSeconds });
  const closedTo = new Date();
  expected += closed.acked;
  const catchUpSeconds = await waitApplied(expected);
  const closedEndToEnd = await endToEnd(closedFrom, closedTo);
  const appliedPerSecond = (await appliedBetween(closedFrom, closedTo)) / ((closedTo.getTime() - closedFrom.getTime()) / 1000);
  // As P: the capture and consumer kept up when events were applied within a second all along.
  const keptUp = catchUpSeconds < 1 && closedEndToEnd.p99 < 1000;
  const pipelineRps = keptUp ? closed.ackedPerSecond : Math.min(closed.ackedPerSecond, appliedPerSecond);
  const s1 = await snapshot();

  log(`CDC: ${closed.ackedPerSecond.toFixed(0)} Add/s acknowledged, ${keptUp ? 'kept up' : `fell behind (applied ${appliedPerSecond.toFixed(0)}/s)`}; open loop at 50% of ${pipelineRps.toFixed(0)}/s`);
  const openFrom = new Date();
  const open = await runGhz(ghz, target, { mode: 'open', rate: pipelineRps / 2, durationSeconds: plan.windowSeconds, connections: callers.connections });
  const openTo = new Date();
  expected += open.acked;
  await waitApplied(expected);
  const openEndToEnd = await endToEnd(openFrom, openTo);
  const s2 = await snapshot();

  const applied = await appliedCount();
  if (applied !== expected) throw new Error(`CDC: ${applied} events applied, but ${expected} sums were acknowledged`);
  const outboxRowsAfter = Number((await sql.query<{ n: string }>('SELECT count(*)::text AS n FROM calculator.outbox')).rows[0]!.n);
  const retained = Number(
    (
      await sql.query<{ bytes: string | null }>(
        'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS bytes FROM pg_replication_slots WHERE slot_name = $1',
        [SLOT],
      )
    ).rows[0]?.bytes ?? NaN,
  );
  const rssMb = {
    calculator: round(peakRssMb(calculator.pid), 1),
    totals: round(peakRssMb(totals.pid), 1),
    kafka_connect: round(connectRss().reduce((sum, pid) => sum + peakRssMb(pid), 0), 1),
  };

  await Promise.all([calculator.stop(), totals.stop()]);
  await connect.deleteConnector(CONNECTOR);
  await connect.stop();
  // The slot would hold WAL for ever; its walsender ends with the worker.
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const dropped = await sql.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [SLOT]).then(
      () => true,
      () => false,
    );
    if (dropped) break;
    await sleep(200);
  }

  return {
    pipeline_rps: round(pipelineRps, 0),
    ack_p50_ms: round(open.p50Ms),
    ack_p99_ms: round(open.p99Ms),
    e2e_p50_ms: round(openEndToEnd.p50),
    e2e_p99_ms: round(openEndToEnd.p99),
    idle_e2e_p50_ms: idle.p50Ms,
    idle_e2e_p99_ms: idle.p99Ms,
    cpu_ms_per_request: perRequest(s0, s1, closed.acked),
    rss_mb: rssMb,
    rss_at_rest_mb: rssAtRestMb,
    connect_start_seconds: round(connectStartSeconds, 1),
    connector_running_seconds: round(connectorRunningSeconds, 1),
    outbox_rows_after: outboxRowsAfter,
    details: {
      p_closed: closed,
      p_closed_consumer_kept_up: keptUp,
      p_closed_applied_rps: round(appliedPerSecond, 0),
      p_closed_catch_up_seconds: round(catchUpSeconds, 2),
      p_closed_e2e_ms: closedEndToEnd,
      p_open: open,
      p_open_e2e_ms: openEndToEnd,
      idle_e2e: idle,
      cpu_ms_per_request_at_saturation: perRequest(s0, s1, closed.acked),
      cpu_ms_per_request_at_half_load: perRequest(s1, s2, open.acked),
      slot_retained_wal_bytes_after: retained,
    },
  };
}
