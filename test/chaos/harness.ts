// The chaos harness: the whole system on its own PostgreSQL and Kafka, clients sending Adds all the
// while, and every component killed (-9) or stopped (SIGTERM) and restarted over and over. When
// the faults stop and the pipeline has gone quiet, every acknowledged request must be applied
// exactly once and the total must be the exact sum of every committed request.
import { randomInt } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startKafkaBroker, type KafkaBroker } from '../../tools/local-stack/kafka-broker.ts';
import { startPostgresServer, type PostgresServer } from '../../tools/local-stack/postgres-server.ts';
import { auditInvariant, auditUntilQuiet, formatReport, type InvariantReport } from '../../src/cli/invariant-audit.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { ChaosClients } from '../../tools/load/retrying-clients.ts';
import { ChaosService, killPostgresCluster, sleep, waitForPortFree, type ServiceName } from './processes.ts';

export const COMPONENTS = ['calculator', 'relay', 'totals', 'kafka', 'postgres'] as const;
export type Component = (typeof COMPONENTS)[number];

export interface ChaosOptions {
  /** How long faults are injected. At least one fault per component happens whatever this says. */
  faultsForMs: number;
  grpcClients?: number;
  httpClients?: number;
  /** Every this-many-th fault is a graceful stop (SIGTERM) instead of kill -9 (default 3). */
  gracefulEvery?: number;
  /** How long the pipeline may take to go quiet once the faults stop (default 120s). */
  quiesceTimeoutMs?: number;
  /** Keep the servers' data and logs (they are kept anyway when the run fails). */
  keepWorkDir?: boolean;
  log?: (line: string) => void;
}

export interface FaultCount {
  kill9: number;
  sigterm: number;
}

export interface ChaosResult {
  ok: boolean;
  /** Why the run failed; empty when ok. */
  problems: string[];
  startedAt: Date;
  durationMs: number;
  faultsForMs: number;
  /** Distinct request ids the clients sent. */
  requests: number;
  acked: number;
  retries: number;
  replays: number;
  gaveUp: number;
  /** Requests committed (in calculator.requests) though no client saw the acknowledgement. */
  committedUnacked: number;
  kills: Record<Component, FaultCount>;
  totalKills: number;
  lost: number;
  double: number;
  total: string;
  errors: Record<string, number>;
  report: InvariantReport | undefined;
  workDir: string;
  /** Whether the run got as far as auditing the pipeline: without that, lost and double mean nothing. */
  measured: boolean;
  /** `chaos: acked=N retries=R kills=K lost=0 double=0`; see chaosSummary. */
  summary: string;
}

interface Topology {
  postgres: PostgresServer | undefined;
  postgresPort: number;
  kafka: KafkaBroker | undefined;
  kafkaPort: number;
  kafkaControllerPort: number;
  services: Record<ServiceName, ChaosService>;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const startedAt = new Date();
  const t0 = Date.now();
  const stamp = (line: string) => log(`[chaos ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}`);
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-chaos-'));
  // As root, PostgreSQL runs as the 'postgres' user, which must be able to reach its data directory.
  await chmod(workDir, 0o755);
  const dirs = { postgres: path.join(workDir, 'postgres'), kafka: path.join(workDir, 'kafka'), logs: path.join(workDir, 'logs') };
  await mkdir(dirs.logs, { recursive: true });
  stamp(`work directory ${workDir}`);

  const kills = Object.fromEntries(COMPONENTS.map((c) => [c, { kill9: 0, sigterm: 0 }])) as Record<Component, FaultCount>;
  const problems: string[] = [];
  let clients: ChaosClients | undefined;
  let sql: pg.Pool | undefined;
  let report: InvariantReport | undefined;
  let lost = 0;
  let double = 0;
  let committedUnacked = 0;
  let measured = false;
  let total = '?';
  const topology: Topology = {
    postgres: undefined,
    postgresPort: await freePort(),
    kafka: undefined,
    kafkaPort: 0,
    kafkaControllerPort: 0,
    services: {} as Record<ServiceName, ChaosService>,
  };

  try {
    topology.postgres = await startPostgresServer({ dataDir: dirs.postgres, port: topology.postgresPort });
    await topology.postgres.ensureDatabase('summa');
    const databaseUrl = topology.postgres.url('summa');
    topology.kafka = await startKafkaBroker({ dataDir: dirs.kafka, port: 0 });
    topology.kafkaPort = topology.kafka.port;
    topology.kafkaControllerPort = topology.kafka.controllerPort;
    stamp(`PostgreSQL on ${topology.postgresPort}, Kafka on ${topology.kafka.brokers}`);

    const [grpcPort, calculatorPort, relayPort, totalsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const env = {
      DATABASE_URL: databaseUrl,
      KAFKA_BROKERS: topology.kafka.brokers,
      KAFKA_TOPIC: 'chaos.sums',
      KAFKA_TOPIC_PARTITIONS: '3',
      TOTALS_GROUP_ID: 'chaos-totals',
      CALCULATOR_GRPC_PORT: String(grpcPort),
      CALCULATOR_HTTP_PORT: String(calculatorPort),
      RELAY_HTTP_PORT: String(relayPort),
      TOTALS_HTTP_PORT: String(totalsPort),
      LOG_LEVEL: 'warn',
    };
    const service = (name: ServiceName, port: number) =>
      new ChaosService(name, env, `http://127.0.0.1:${port}/readyz`, path.join(dirs.logs, `${name}.log`));
    topology.services = { calculator: service('calculator', calculatorPort), relay: service('relay', relayPort), totals: service('totals', totalsPort) };
    await topology.services.calculator.start();
    await Promise.all([topology.services.relay.start(), topology.services.totals.start()]);
    stamp('services up; clients start');

    clients = new ChaosClients({
      grpcAddress: `127.0.0.1:${grpcPort}`,
      httpUrl: `http://127.0.0.1:${calculatorPort}`,
      grpcClients: options.grpcClients ?? 4,
      httpClients: options.httpClients ?? 2,
      callTimeoutMs: 2_000,
      giveUpAfterMs: 30_000,
      pauseMs: 20,
    });
    clients.start();

    // Faults one after another, in shuffled rounds that each hit every component once.
    const faultsUntil = Date.now() + options.faultsForMs;
    const gracefulEvery = options.gracefulEvery ?? 3;
    let round: Component[] = [];
    let faults = 0;
    while (Date.now() < faultsUntil || faults < COMPONENTS.length) {
      if (round.length === 0) round = shuffle([...COMPONENTS]);
      const component = round.shift()!;
      await sleep(randomInt(500, 2_000)); // traffic flows between faults
      const graceful = faults % gracefulEvery === gracefulEvery - 1;
      const downMs = randomInt(100, 2_000);
      const began = Date.now();
      await inject(topology, component, graceful, downMs, dirs);
      kills[component][graceful ? 'sigterm' : 'kill9'] += 1;
      faults += 1;
      stamp(
        `${graceful ? 'SIGTERM' : 'kill -9'} ${component}, down ${downMs} ms, back after ${Date.now() - began} ms` +
          ` (acked ${clients.stats.acked.size}, retries ${clients.stats.retries})`,
      );
    }

    stamp('faults over; clients finish the requests under way');
    await clients.stop();
    const { stats } = clients;
    stamp(`clients done: ${stats.attempted.size} requests, ${stats.acked.size} acknowledged, ${stats.gaveUp} given up`);

    // Quiet: the outbox drained and every committed request applied. Until then nothing counts as lost.
    // Three connections: the audit's snapshot on each side, and its second read of lost candidates.
    sql = new pg.Pool({ connectionString: databaseUrl, max: 3 });
    const quiesceSeconds = (options.quiesceTimeoutMs ?? 120_000) / 1000;
    await auditUntilQuiet({ calculator: sql, totals: sql }, { waitSeconds: quiesceSeconds, graceSeconds: 24 * 3600, pollMs: 500 });
    report = await auditInvariant({ calculator: sql, totals: sql }, { graceSeconds: 0 });
    stamp(`pipeline quiet; audit:\n${formatReport(report)}`);

    const stuck = report.counts.pendingInOutbox + report.counts.inTransit;
    const ackedIds = [...stats.acked.keys()];
    const committed = await sql.query<{ request_id: string; sum: string }>(
      'SELECT request_id, sum::text FROM calculator.requests WHERE request_id = ANY($1)',
      [[...stats.attempted.keys()]],
    );
    const committedSums = new Map(committed.rows.map((row) => [row.request_id, BigInt(row.sum)]));
    let ackedMissing = 0;
    for (const id of ackedIds) {
      const sum = committedSums.get(id);
      if (sum === undefined) {
        ackedMissing += 1;
        if (ackedMissing <= 5) problems.push(`acknowledged request ${id} is not in calculator.requests`);
      } else if (sum !== stats.acked.get(id)) {
        problems.push(`acknowledged request ${id}: client was told ${stats.acked.get(id)}, the calculator recorded ${sum}`);
      }
    }
    committedUnacked = [...committedSums.keys()].filter((id) => !stats.acked.has(id)).length;
    const strangers = committed.rowCount === report.counts.requests ? 0 : report.counts.requests - (committed.rowCount ?? 0);
    if (strangers !== 0) problems.push(`${strangers} request(s) in calculator.requests that no client sent`);

    // The total must be the exact sum over every committed request, acknowledged or not.
    const sums = await sql.query<{ expected: string; requests: string; total: string; count: string }>(
      `SELECT (SELECT coalesce(sum(sum), 0)::text FROM calculator.requests) AS expected,
              (SELECT count(*)::text FROM calculator.requests) AS requests,
              t.total::text AS total, t.count::text AS count
       FROM totals.total t WHERE t.id = 1`,
    );
    const row = sums.rows[0]!;
    total = row.total;
    if (BigInt(row.total) !== BigInt(row.expected) || row.count !== row.requests) {
      problems.push(`total ${row.total} over ${row.count} events, but the committed requests add up to ${row.expected} over ${row.requests}`);
    }

    lost = report.problems.lost + stuck + ackedMissing;
    double = report.problems.appliedTwice;
    measured = true;
    if (lost > 0) problems.push(`${lost} request(s) lost (${report.problems.lost} neither in the outbox nor applied, ${stuck} never applied, ${ackedMissing} acknowledged but not recorded)`);
    if (double > 0) problems.push(`${double} request(s) applied more than once`);
    for (const failure of report.failures) if (!problems.includes(failure)) problems.push(`verify: ${failure}`);
    problems.push(...stats.violations.slice(0, 10).map((v) => `client: ${v}`));
    if (stats.acked.size === 0) problems.push('no request was acknowledged at all');
    for (const service of Object.values(topology.services)) {
      if (service.crashes > 0) problems.push(`${service.name} exited on its own ${service.crashes} time(s); see ${service.logFile}`);
    }
  } catch (error) {
    problems.push(`harness failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
  } finally {
    await clients?.abort().catch(() => {});
    await sql?.end().catch(() => {});
    await teardown(topology);
  }

  const stats = clients?.stats;
  const totalKills = COMPONENTS.reduce((n, c) => n + kills[c].kill9 + kills[c].sigterm, 0);
  const outcome = { ok: problems.length === 0, measured, acked: stats?.acked.size ?? 0, retries: stats?.retries ?? 0, totalKills, lost, double };
  const result: ChaosResult = {
    ok: problems.length === 0,
    problems,
    startedAt,
    durationMs: Date.now() - t0,
    faultsForMs: options.faultsForMs,
    requests: stats?.attempted.size ?? 0,
    acked: stats?.acked.size ?? 0,
    retries: stats?.retries ?? 0,
    replays: stats?.replays ?? 0,
    gaveUp: stats?.gaveUp ?? 0,
    committedUnacked,
    kills,
    totalKills,
    lost,
    double,
    total,
    errors: Object.fromEntries(stats?.errors ?? []),
    report,
    workDir,
    measured,
    summary: chaosSummary(outcome),
  };
  for (const line of describe(result)) log(line);
  if (result.ok && !options.keepWorkDir) await rm(workDir, { recursive: true, force: true }).catch(() => {});
  else log(`servers' data and logs kept in ${workDir}`);
  return result;
}

async function inject(topology: Topology, component: Component, graceful: boolean, downMs: number, dirs: { postgres: string; kafka: string }) {
  switch (component) {
    case 'calculator':
    case 'relay':
    case 'totals': {
      const service = topology.services[component];
      await (graceful ? service.stop() : service.kill());
      await sleep(downMs);
      await service.start();
      return;
    }
    case 'kafka': {
      const broker = topology.kafka!;
      topology.kafka = undefined;
      await (graceful ? broker.stop() : broker.kill());
      await sleep(downMs);
      await waitForPortFree(topology.kafkaPort);
      topology.kafka = await startKafkaBroker({ dataDir: dirs.kafka, port: topology.kafkaPort, controllerPort: topology.kafkaControllerPort });
      return;
    }
    case 'postgres': {
      const server = topology.postgres!;
      topology.postgres = undefined;
      if (graceful) await server.stop();
      else await killPostgresCluster(await server.pid(), topology.postgresPort);
      await sleep(downMs);
      await waitForPortFree(topology.postgresPort);
      topology.postgres = await startPostgresServer({ dataDir: dirs.postgres, port: topology.postgresPort });
      return;
    }
  }
}

/** Everything down, hard: the data is not needed any more, only the logs. */
async function teardown(topology: Topology): Promise<void> {
  await Promise.allSettled(Object.values(topology.services).map((service) => service.kill()));
  await topology.kafka?.kill().catch(() => {});
  if (topology.postgres) {
    const server = topology.postgres;
    await server
      .pid()
      .then((pid) => killPostgresCluster(pid, topology.postgresPort))
      .catch(() => server.stop());
  }
}

/**
 * The run's last line. `lost=0 double=0` only when the audit ran: a harness that failed before
 * measuring anything says FAILED and n/a, never a clean bill it did not check.
 */
export function chaosSummary(outcome: Pick<ChaosResult, 'ok' | 'measured' | 'acked' | 'retries' | 'totalKills' | 'lost' | 'double'>): string {
  const counts = `acked=${outcome.acked} retries=${outcome.retries} kills=${outcome.totalKills}`;
  if (!outcome.measured) return `chaos: FAILED ${counts} lost=n/a double=n/a`;
  return `chaos: ${outcome.ok ? '' : 'FAILED '}${counts} lost=${outcome.lost} double=${outcome.double}`;
}

export function describe(result: ChaosResult): string[] {
  const lines = [
    `chaos run of ${(result.durationMs / 1000).toFixed(0)} s (faults for ${(result.faultsForMs / 1000).toFixed(0)} s), started ${result.startedAt.toISOString()}`,
    `  requests sent:        ${result.requests}`,
    `  acknowledged:         ${result.acked} (${result.replays} of them replays of an earlier commit)`,
    `  retries:              ${result.retries}`,
    `  given up by clients:  ${result.gaveUp} (committed without the client seeing it: ${result.committedUnacked})`,
    `  faults:               ${result.totalKills}`,
    ...COMPONENTS.map((c) => `    ${c.padEnd(11)} ${result.kills[c].kill9} kill -9, ${result.kills[c].sigterm} SIGTERM`),
    `  client errors seen:   ${Object.entries(result.errors).map(([kind, n]) => `${kind} ×${n}`).join(', ') || 'none'}`,
    `  final total:          ${result.total}`,
  ];
  if (!result.ok) lines.push('FAILED:', ...result.problems.map((p) => `  - ${p}`));
  lines.push(result.summary);
  return lines;
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
