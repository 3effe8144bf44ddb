// The chaos harness: the whole system on its own PostgreSQL and Kafka, several instances of each
// service (by default two calculators behind the clients, two relays on one outbox, two totals
// consumers in one group; see topology.ts for the cluster), clients sending Adds all the while, and
// every component killed (-9) or stopped (SIGTERM) and restarted over and over. A kill -9 of a
// totals consumer is aimed between its database commit and its Kafka commit, so that Kafka really
// delivers applied records again. When the faults stop and the pipeline has gone quiet, every
// acknowledged request must be applied exactly once, the total must be the exact sum of every
// committed request, and no refused request may be in it.
import { randomInt } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { auditInvariant, auditUntilQuiet, formatReport, type InvariantReport } from '../../src/cli/invariant-audit.ts';
import { ChaosClients, type Refusal } from '../../tools/load/retrying-clients.ts';
import { killInCommitWindow, scrapeTotals } from '../support/commit-window.ts';
import { sleep, type ChaosService } from './processes.ts';
import type { FaultTarget } from './stack.ts';
import { startSystem, type ChaosSystem } from './system.ts';
import { TotalReaders, type TotalReadStats } from './total-readers.ts';
import { componentsOf, targetNames, TWO_INSTANCES, type ChaosTopology, type Component } from './topology.ts';
import { auditWindows, formatWindowAudit, installRowLogs, waitUntilQuiet, windowEnv, type ChaosWindows, type WindowAudit } from './window-audit.ts';

export type { Component };

export interface ChaosOptions {
  /** What runs; default TWO_INSTANCES. */
  topology?: ChaosTopology;
  /** How long faults are injected. Each target (see atLeastOnce) is faulted once whatever this says. */
  faultsForMs: number;
  grpcClients?: number;
  httpClients?: number;
  /** Pairs of clients sending each request to two calculators (or twice through nginx) at the same moment (default 1). */
  twinPairs?: number;
  /** Clients sending other numbers under taken ids (default 1). */
  conflictClients?: number;
  /**
   * What the run faults at least once, however short: every target (each service instance, broker
   * and database server; the default), or each component (one of its instances).
   */
  atLeastOnce?: 'target' | 'component';
  /** How long a kill -9 of a totals consumer waits for a moment between its two commits (default 20 s). */
  aimForMs?: number;
  /** Every this-many-th fault is a graceful stop (SIGTERM) instead of kill -9 (default 3); a component's first fault is always a kill -9. */
  gracefulEvery?: number;
  /** How long the pipeline may take to go quiet once the faults stop (default 120s). */
  quiesceTimeoutMs?: number;
  /** Keep the servers' data and logs (they are kept anyway when the run fails). */
  keepWorkDir?: boolean;
  /**
   * Short windows for the services' requests and applied events (seconds), so that partitions are
   * switched and dropped while components are killed. The run is then audited on logs of every row
   * written (window-audit.ts), since the rows themselves are gone by the end.
   */
  windows?: ChaosWindows;
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
  topology: ChaosTopology;
  /** The topology's components, each faulted at least once. */
  components: Component[];
  /** Faults by component (every instance of a service, every broker together). */
  kills: Record<Component, FaultCount>;
  /** Faults by target: service instance (calculator-1, ..., totals-2), broker (kafka, or kafka-1...), postgres, replica. */
  instanceKills: Record<string, FaultCount>;
  totalKills: number;
  /** Kafka delivering again what a killed totals consumer had applied but not committed. */
  redelivery: Redelivery;
  /** GET /total reads through the faults (only when the totals read from a replica). */
  totalReads: TotalReadStats | undefined;
  /** Requests sent to both calculators at the same moment. */
  twins: { sent: number; bothAcked: number };
  /** Other numbers under a taken id: refused ones, and refused ones whose numbers were recorded anyway. */
  conflicts: { sent: number; refused: number; counted: number };
  lost: number;
  double: number;
  total: string;
  errors: Record<string, number>;
  report: InvariantReport | undefined;
  workDir: string;
  /** The audit on the row logs, when the run had short windows. */
  windowAudit: WindowAudit | undefined;
  /** Whether the run got as far as auditing the pipeline: without that, lost and double mean nothing. */
  measured: boolean;
  /** `chaos: acked=N retries=R kills=K lost=0 double=0`; see chaosSummary. */
  summary: string;
}

export interface Redelivery {
  /** kill -9s of a totals consumer (each aimed between its database commit and its Kafka commit). */
  aimedKills: number;
  /** Those that landed there: the group's committed offset behind totals.consumer_offsets after the kill. */
  landed: number;
  /** Records in those gaps: applied, and certain to be delivered again. */
  records: number;
  /** summa_totals_duplicates_skipped_total over every totals process (as of its last scrape). */
  duplicatesSkipped: number;
}

/** A fault target: one service instance, or a server of the stack (a broker, the primary, the replica). */
type Target = FaultTarget & { instance?: ChaosService };

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const topology = options.topology ?? TWO_INSTANCES;
  const log = options.log ?? ((line: string) => console.log(line));
  const startedAt = new Date();
  const t0 = Date.now();
  const stamp = (line: string) => log(`[chaos ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}`);
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-chaos-'));
  // As root, PostgreSQL runs as the 'postgres' user, which must be able to reach its data directory.
  await chmod(workDir, 0o755);
  stamp(`work directory ${workDir}`);

  const components = componentsOf(topology);
  const kills = Object.fromEntries(components.map((c) => [c, { kill9: 0, sigterm: 0 }])) as Record<Component, FaultCount>;
  const instanceKills: Record<string, FaultCount> = Object.fromEntries(targetNames(topology).map((name) => [name, { kill9: 0, sigterm: 0 }]));
  const redelivery: Redelivery = { aimedKills: 0, landed: 0, records: 0, duplicatesSkipped: 0 };
  const conflicts = { sent: 0, refused: 0, counted: 0 };
  const problems: string[] = [];
  let clients: ChaosClients | undefined;
  let readers: TotalReaders | undefined;
  let report: InvariantReport | undefined;
  let windowAudit: WindowAudit | undefined;
  let lost = 0;
  let double = 0;
  let committedUnacked = 0;
  let measured = false;
  let total = '?';
  let system: ChaosSystem | undefined;
  /** Reads totals.consumer_offsets while aiming, and audits at the end. */
  let sql: pg.Pool | undefined;
  // The duplicates each totals process had skipped by its last scrape: a killed one keeps its figure.
  const duplicatesByProcess = new Map<string, number>();

  try {
    system = await startSystem(topology, workDir, { log: stamp, env: options.windows && windowEnv(options.windows) });
    const { stack, services, totalsUrls, groupId, topic } = system;
    // Three connections at least: the audit's snapshot on each side, and its second read of lost candidates.
    const audit = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
    sql = audit;
    // PostgreSQL is killed too: an idle connection that breaks must not take the harness down.
    audit.on('error', () => {});
    if (options.windows) await installRowLogs(audit);
    stamp('clients start');

    clients = new ChaosClients({
      calculators: system.calculators,
      grpcClients: options.grpcClients ?? 4,
      httpClients: options.httpClients ?? 2,
      twinPairs: options.twinPairs ?? 1,
      conflictClients: options.conflictClients ?? 1,
      callTimeoutMs: 2_000,
      giveUpAfterMs: 30_000,
      pauseMs: 20,
      idempotencyWindowMs: options.windows && options.windows.idempotencySeconds * 1000,
    });
    clients.start();
    // The replica is worth faulting only if something reads from it: GET /total through nginx.
    if (topology.replica) {
      const busy = clients;
      readers = new TotalReaders({ url: system.totalsUrl, readers: 2, recentRequest: () => busy.lastAcked(), pauseMs: 100 });
      readers.start();
    }

    /** Banks a totals process's duplicates figure before it goes (and at the end). */
    const scrapeDuplicates = async (instance: ChaosService) => {
      const scrape = instance.running ? await scrapeTotals(totalsUrls.get(instance.name)!).catch(() => undefined) : undefined;
      if (scrape) duplicatesByProcess.set(`${instance.name}/${instance.pid}`, scrape.duplicatesSkipped);
    };
    /** kill -9 of a totals consumer, aimed between its database commit and its Kafka commit. */
    const aimedKill = async (instance: ChaosService): Promise<string> => {
      const processKey = `${instance.name}/${instance.pid}`;
      const kill = await killInCommitWindow(
        {
          pid: instance.pid,
          url: totalsUrls.get(instance.name)!,
          sql: audit,
          brokers: stack.kafkaBrokers,
          kafkaSecurity: stack.kafkaSecurity,
          groupId,
          topic,
        },
        () => instance.kill(),
        options.aimForMs ?? 20_000,
      );
      redelivery.aimedKills += 1;
      duplicatesByProcess.set(processKey, Math.max(duplicatesByProcess.get(processKey) ?? 0, kill.duplicatesSkipped));
      if (kill.landed) {
        redelivery.landed += 1;
        redelivery.records += kill.records;
      }
      return kill.landed
        ? ` between its commits (after ${kill.attempts} freeze(s); ${kill.records} record(s) applied, not committed to Kafka)`
        : ` outside its commit window (${kill.attempts} freeze(s) found none)`;
    };

    // Faults one after another, in shuffled rounds that each hit every service instance, broker and
    // database server once. Every gracefulEvery-th fault is a SIGTERM, except a component's first.
    // One at a time, and each target back before the next fault: a cluster keeps a quorum of
    // brokers, and the replica and the primary are never down together.
    const targets: Target[] = [
      ...services.map((instance) => ({
        name: instance.name,
        component: instance.service,
        instance,
        kill: () => instance.kill(),
        stop: () => instance.stop(),
        start: () => instance.start(),
      })),
      ...stack.targets,
    ];
    const faultsUntil = Date.now() + options.faultsForMs;
    const gracefulEvery = options.gracefulEvery ?? 3;
    const everyTarget = (options.atLeastOnce ?? 'target') === 'target';
    // With only each component's faulting promised, the first round is one target of each.
    let round: Target[] = everyTarget ? [] : shuffle(components.map((c) => shuffle(targets.filter((t) => t.component === c))[0]!));
    const firstRound = everyTarget ? targets.length : round.length;
    let faults = 0;
    while (Date.now() < faultsUntil || faults < firstRound) {
      if (round.length === 0) round = shuffle([...targets]);
      const target = round.shift()!;
      const { component, instance } = target;
      const settling = Date.now();
      const unsettled = await target.settle?.();
      if (unsettled) stamp(`${target.name}: ${unsettled}; faulted all the same`);
      else if (Date.now() - settling > 2_000) stamp(`${target.name}: waited ${((Date.now() - settling) / 1000).toFixed(1)} s for the others to be in sync`);
      await sleep(randomInt(500, 2_000)); // traffic flows between faults
      const graceful = faults % gracefulEvery === gracefulEvery - 1 && kills[component].kill9 > 0;
      const downMs = randomInt(100, 2_000);
      const began = Date.now();
      let aimed = '';
      if (instance?.service === 'totals') await scrapeDuplicates(instance);
      if (graceful) await target.stop();
      else if (instance?.service === 'totals') aimed = await aimedKill(instance);
      else await target.kill();
      await sleep(downMs);
      await target.start();
      instanceKills[target.name]![graceful ? 'sigterm' : 'kill9'] += 1;
      kills[component][graceful ? 'sigterm' : 'kill9'] += 1;
      faults += 1;
      stamp(
        `${graceful ? 'SIGTERM' : 'kill -9'} ${target.name}${aimed}, down ${downMs} ms, back after ${Date.now() - began} ms` +
          ` (acked ${clients.stats.acked.size}, retries ${clients.stats.retries})`,
      );
    }

    stamp('faults over; clients finish the requests under way');
    await readers?.stop();
    await clients.stop();
    const { stats } = clients;
    stamp(`clients done: ${stats.attempted.size} requests, ${stats.acked.size} acknowledged, ${stats.gaveUp} given up`);

    if (options.windows) {
      // Rows are dropped as the run goes: audited on the logs of every row written instead.
      const quiet = await waitUntilQuiet(sql, options.quiesceTimeoutMs ?? 120_000);
      windowAudit = await auditWindows(sql);
      stamp(`pipeline ${quiet ? 'quiet' : 'NOT quiet'}; audit of the row logs:\n${formatWindowAudit(windowAudit)}`);
      problems.push(...windowAudit.problems);
      const recorded = windowAudit.recorded;
      let ackedMissing = 0;
      for (const [id, sum] of stats.acked) {
        const sums = recorded.get(id);
        if (sums === undefined) {
          ackedMissing += 1;
          if (ackedMissing <= 5) problems.push(`acknowledged request ${id} was never recorded`);
        } else if (!sums.includes(sum)) {
          problems.push(`acknowledged request ${id}: client was told ${sum}, the calculator recorded ${sums.join(', ')}`);
        }
      }
      committedUnacked = [...recorded.keys()].filter((id) => !stats.acked.has(id)).length;
      // A refusal is made against what the id was first recorded with.
      const refusals = checkRefusals(stats.conflicts.refused, new Map([...recorded].map(([id, sums]) => [id, sums[0]!])));
      conflicts.counted = refusals.counted.length;
      for (const { requestId } of refusals.counted.slice(0, 5)) problems.push(`request ${requestId} was refused, yet its numbers are the ones recorded`);
      for (const { requestId } of refusals.unrecorded.slice(0, 5)) problems.push(`request ${requestId} was refused as a conflict, but nothing is recorded under its id`);
      conflicts.sent = stats.conflicts.sent;
      conflicts.refused = stats.conflicts.refused.length;
      const strangers = [...recorded.keys()].filter((id) => !stats.attempted.has(id)).length;
      if (strangers !== 0) problems.push(`${strangers} request(s) recorded that no client sent`);
      if (windowAudit.droppedGenerations.requests === 0 || windowAudit.droppedGenerations.appliedEvents === 0) {
        problems.push('the services dropped no partition during the run: the windows were not short enough to matter');
      }
      // What an operator would run: `summa verify`'s audit, across the periods dropped meanwhile.
      const report = await auditUntilQuiet({ calculator: sql, totals: sql }, { waitSeconds: 30, graceSeconds: 24 * 3600, pollMs: 500 });
      stamp(`summa verify's audit: ${report.ok ? 'ok' : report.failures.join('; ')}`);
      if (!report.ok) problems.push(`summa verify's audit failed across the drops: ${report.failures.join('; ')}`);
      total = windowAudit.total;
      lost = windowAudit.lost + ackedMissing;
      double = windowAudit.double;
      measured = true;
    } else {
      // Quiet: the outbox drained and every committed request applied. Until then nothing counts as lost.
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
      // A refused request's numbers must not be what was recorded under its id (and so in the total).
      const refusals = checkRefusals(stats.conflicts.refused, committedSums);
      conflicts.counted = refusals.counted.length;
      for (const { requestId } of refusals.counted.slice(0, 5)) problems.push(`request ${requestId} was refused, yet its numbers are the ones recorded`);
      for (const { requestId } of refusals.unrecorded.slice(0, 5)) problems.push(`request ${requestId} was refused as a conflict, but nothing is recorded under its id`);
      conflicts.sent = stats.conflicts.sent;
      conflicts.refused = stats.conflicts.refused.length;
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
    }
    problems.push(...stats.violations.slice(0, 10).map((v) => `client: ${v}`));
    if (readers) {
      problems.push(...readers.stats.violations.slice(0, 10).map((v) => `reader: ${v}`));
      if (!readers.stats.bySource.replica) problems.push('no GET /total was served by the replica');
    }
    if (stats.acked.size === 0) problems.push('no request was acknowledged at all');
    for (const service of services) {
      if (service.crashes > 0) problems.push(`${service.name} exited on its own ${service.crashes} time(s); see ${service.logFile}`);
    }

    // What the run was meant to exercise, and did.
    for (const instance of services.filter((s) => s.service === 'totals')) await scrapeDuplicates(instance);
    redelivery.duplicatesSkipped = [...duplicatesByProcess.values()].reduce((n, d) => n + d, 0);
    if (redelivery.aimedKills > 0 && redelivery.landed === 0) {
      problems.push(`none of the ${redelivery.aimedKills} kill -9s of a totals consumer landed between its database commit and its Kafka commit`);
    }
    if (redelivery.landed > 0 && redelivery.duplicatesSkipped === 0) {
      problems.push(`${redelivery.records} record(s) were applied but not committed to Kafka when their consumer died, yet no consumer skipped a duplicate`);
    }
    if ((options.twinPairs ?? 1) > 0 && stats.twins.bothAcked === 0) problems.push('no request sent to both calculators at once was acknowledged to both clients');
    if ((options.conflictClients ?? 1) > 0 && conflicts.refused === 0) problems.push('no conflicting request was refused');
  } catch (error) {
    problems.push(`harness failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
  } finally {
    await readers?.stop().catch(() => {});
    await clients?.abort().catch(() => {});
    await sql?.end().catch(() => {});
    // Everything down, hard: the data is not needed any more, only the logs.
    await system?.teardown();
  }

  const stats = clients?.stats;
  const totalKills = components.reduce((n, c) => n + kills[c].kill9 + kills[c].sigterm, 0);
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
    topology,
    components,
    kills,
    instanceKills,
    totalKills,
    redelivery,
    totalReads: readers?.stats,
    twins: stats?.twins ?? { sent: 0, bothAcked: 0 },
    conflicts,
    lost,
    double,
    total,
    errors: Object.fromEntries(stats?.errors ?? []),
    report,
    windowAudit,
    workDir,
    measured,
    summary: chaosSummary(outcome),
  };
  for (const line of describe(result)) log(line);
  if (result.ok && !options.keepWorkDir) await rm(workDir, { recursive: true, force: true }).catch(() => {});
  else log(`servers' data and logs kept in ${workDir}`);
  return result;
}

/**
 * Refused conflicting requests against what is recorded under their ids: `counted` are those whose
 * numbers were recorded all the same (so they are in the total), `unrecorded` those refused for an
 * id nothing is recorded under (refused in favour of nothing). Both must be empty.
 */
export function checkRefusals(refusals: readonly Refusal[], recorded: ReadonlyMap<string, bigint>): { counted: Refusal[]; unrecorded: Refusal[] } {
  const counted: Refusal[] = [];
  const unrecorded: Refusal[] = [];
  for (const refusal of refusals) {
    const sum = recorded.get(refusal.requestId);
    if (sum === undefined) unrecorded.push(refusal);
    else if (sum === refusal.sum) counted.push(refusal);
  }
  return { counted, unrecorded };
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
  const { redelivery, twins, conflicts } = result;
  const instancesOf = (component: Component) => Object.keys(result.instanceKills).filter((name) => name.startsWith(`${component}-`));
  const byInstance = (component: Component) =>
    instancesOf(component)
      .map((name) => `${name}: ${result.instanceKills[name]!.kill9} + ${result.instanceKills[name]!.sigterm}`)
      .join(', ');
  const lines = [
    `chaos run of ${(result.durationMs / 1000).toFixed(0)} s (faults for ${(result.faultsForMs / 1000).toFixed(0)} s), started ${result.startedAt.toISOString()}`,
    `  topology:             ${describeTopology(result.topology)}`,
    `  requests sent:        ${result.requests}`,
    `  acknowledged:         ${result.acked} (${result.replays} answers were replays of an earlier commit)`,
    `  sent to both calculators at once: ${twins.sent} (both clients answered for ${twins.bothAcked})`,
    `  conflicting requests: ${conflicts.sent}, refused ${conflicts.refused}, of which counted ${conflicts.counted}`,
    `  retries:              ${result.retries}`,
    `  given up by clients:  ${result.gaveUp} (committed without the client seeing it: ${result.committedUnacked})`,
    `  faults:               ${result.totalKills}`,
    ...result.components.map((c) => {
      const instances = instancesOf(c).length > 0 ? ` (kill -9 + SIGTERM by instance: ${byInstance(c)})` : '';
      return `    ${c.padEnd(11)} ${result.kills[c].kill9} kill -9, ${result.kills[c].sigterm} SIGTERM${instances}`;
    }),
    `  totals kill -9s between the database commit and the Kafka commit: ${redelivery.landed} of ${redelivery.aimedKills}` +
      ` (${redelivery.records} records applied but not committed to Kafka; duplicates skipped: ${redelivery.duplicatesSkipped})`,
    `  client errors seen:   ${Object.entries(result.errors).map(([kind, n]) => `${kind} ×${n}`).join(', ') || 'none'}`,
    ...(result.totalReads ? [describeReads(result.totalReads)] : []),
    ...(result.windowAudit ? [describeWindows(result.windowAudit)] : []),
    `  final total:          ${result.total}`,
  ];
  if (!result.ok) lines.push('FAILED:', ...result.problems.map((p) => `  - ${p}`));
  lines.push(result.summary);
  return lines;
}

function describeWindows(audit: WindowAudit): string {
  const { requests, appliedEvents } = audit.droppedGenerations;
  return (
    `  short windows:        partitions dropped during the run: ${requests} of calculator.requests, ${appliedEvents} of totals.applied_events; ` +
    `${audit.recordedAgain} id(s) recorded again after the window; ${audit.quarantined} event(s) quarantined as too old`
  );
}

function describeReads(reads: TotalReadStats): string {
  const counts = (record: Record<string, number>) => Object.entries(record).map(([kind, n]) => `${kind} ×${n}`).join(', ') || 'none';
  return `  GET /total through nginx: served by ${counts(reads.bySource)} (${reads.afterAnswered} waited for a request with ?after=); failed: ${counts(reads.errors)}`;
}

export function describeTopology(topology: ChaosTopology): string {
  const { calculator, relay, totals } = topology.instances;
  return [
    `${calculator} calculator(s)${topology.loadBalancer ? ' behind nginx' : ''}`,
    `${relay} relay(s)`,
    `${totals} totals consumer(s)`,
    `${topology.brokers} Kafka broker(s)${topology.kafkaSecurity ? ' (SASL_SSL)' : ''}, ${topology.partitions} partitions`,
    `PostgreSQL${topology.replica ? ' primary + streaming replica' : ''}`,
  ].join(', ');
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
