// `npm run bench:commits [-- --seconds N] [--callers N] [--flush-delay-ms N]`
//
// Do several calculators commit in parallel? A transaction that sent a NOTIFY takes PostgreSQL's
// notify lock at COMMIT — one lock for the whole server, held through the WAL flush — so while the
// outbox trigger notified inside every write, the calculators' commits queued for it one by one.
//
// One embedded PostgreSQL in a temp dir; 1 and then 3 calculator processes on it, each wake-up in
// turn: `trigger` re-creates the statement-level trigger of migration 001 (what ran before migration
// 003; the calculators still send their own NOTIFY after each commit, at most one in flight each),
// `after-commit` is the code as it is. A session LISTENs on the channel as a relay would. Closed-loop
// HTTP callers spread over the calculators add sums for a window, while pg_stat_activity is sampled
// for the calculators' sessions waiting for a lock on an object — the notify lock is the only one
// of that kind they take — told apart by whether the waiting statement is a write or a NOTIFY.
// `--flush-delay-ms N` makes each WAL flush N ms slower (commit_delay, commit_siblings=0), as on a
// disk that takes that long to flush (network storage): the notify lock is held through the flush,
// so the slower the flush, the more a lock taken by every commit costs.
// Prints a table and writes tools/bench/results/commit-parallelism.json.
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { CALCULATOR_MIGRATIONS, OUTBOX_CHANNEL } from '../../src/calculator/schema.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { startPostgresServer } from '../local-stack/postgres-server.ts';
import { freePort } from '../lib/free-port.ts';
import { repoRoot } from '../lib/paths.ts';
import { BenchProcess, httpReady } from './bench-process.ts';
import { cpuSeconds, treeCpuSeconds } from './process-stats.ts';
import { benchCleanups } from './cleanups.ts';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    callers: { type: 'string', default: '48' },
    'flush-delay-ms': { type: 'string', default: '0' },
  },
});
const SECONDS = Number(flags.seconds);
const CALLERS = Number(flags.callers);
if (!Number.isInteger(SECONDS) || SECONDS < 1) throw new Error(`--seconds must be a positive whole number, got ${flags.seconds}`);
if (!Number.isInteger(CALLERS) || CALLERS < 1) throw new Error(`--callers must be a positive whole number, got ${flags.callers}`);
const FLUSH_DELAY_MS = Number(flags['flush-delay-ms']);
if (!Number.isInteger(FLUSH_DELAY_MS) || FLUSH_DELAY_MS < 0 || FLUSH_DELAY_MS > 100) {
  throw new Error(`--flush-delay-ms must be a whole number from 0 to 100 (PostgreSQL's commit_delay limit), got ${flags['flush-delay-ms']}`);
}
const WARMUP_SECONDS = 2;
const SAMPLE_EVERY_MS = 20;
const RESULTS_DIR = path.join(repoRoot, 'tools', 'bench', 'results');

/** Migration 001's trigger, as it ran before migration 003 dropped it. */
const TRIGGER_SQL = `
CREATE OR REPLACE FUNCTION calculator.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('${OUTBOX_CHANNEL}', '');
  RETURN NULL;
END;
$$;
CREATE OR REPLACE TRIGGER outbox_notify
  AFTER INSERT ON calculator.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION calculator.notify_outbox();`;
const NO_TRIGGER_SQL = `DROP TRIGGER IF EXISTS outbox_notify ON calculator.outbox; DROP FUNCTION IF EXISTS calculator.notify_outbox();`;

/** The calculators' sessions right now: busy ones, and those waiting for the notify lock by statement. */
const SAMPLE_SQL = `
SELECT count(*) FILTER (WHERE state = 'active')::int AS active,
       count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event = 'object' AND query NOT LIKE '%pg_notify%')::int AS writes_waiting,
       count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event = 'object' AND query LIKE '%pg_notify%')::int AS notifies_waiting
FROM pg_stat_activity WHERE application_name = 'summa-calculator'`;

type Wakeup = 'trigger' | 'after-commit';

interface Round {
  wakeup: Wakeup;
  calculators: number;
  addsPerSecond: number;
  /** Of the samples, the share with at least one write waiting for the notify lock. */
  samplesWithWriteWaiting: number;
  /** Writes waiting for the notify lock, on average over the samples; and the most at once. */
  meanWritesWaiting: number;
  maxWritesWaiting: number;
  /** NOTIFY statements sent after a commit waiting for the lock, on average. */
  meanNotifiesWaiting: number;
  /** Calculator sessions running a statement (writing, committing or waiting), on average. */
  meanActive: number;
  /** Of the calculator sessions' busy time (sessions × samples), the share spent waiting for the notify lock. */
  busyTimeWaiting: number;
  notificationsReceived: number;
  /** CPU seconds per 1,000 Adds: calculators, PostgreSQL. */
  cpuMsPerAdd: { calculators: number; postgres: number };
  samples: number;
}

const log = (message: string) => console.error(`[bench:commits ${new Date().toISOString().slice(11, 19)}] ${message}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (value: number, digits = 2) => Number(value.toFixed(digits));

const { cleanups, cleanUp } = benchCleanups(log);

/** Closed-loop callers over HTTP, spread over `targets`, until `until`; returns the Adds acknowledged. */
async function addLoad(targets: string[], callers: number, prefix: string, until: number): Promise<number> {
  let acked = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: callers }, async (_, caller) => {
      const url = `${targets[caller % targets.length]}/v1/sums`;
      for (let n = 0; Date.now() < until; n += 1) {
        const response = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ num1: n, num2: caller, requestId: `${prefix}-${caller}-${n}` }),
        }).catch(() => undefined);
        await response?.arrayBuffer();
        if (response?.status === 201) acked += 1;
        else failed += 1;
      }
    }),
  );
  if (failed > 0) log(`  ${failed} Adds failed`);
  return acked;
}

async function main(): Promise<void> {
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-bench-commits-'));
  log(`load average at start: ${os.loadavg().map((value) => value.toFixed(1)).join(' ')}`);
  await chmod(workDir, 0o755); // PostgreSQL runs as its own user when started as root
  cleanups.push(() => rm(workDir, { recursive: true, force: true }));
  const startedAt = new Date();
  const loadAtStart = os.loadavg().map((value) => round(value));

  log('starting PostgreSQL');
  const postgres = await startPostgresServer({ dataDir: path.join(workDir, 'postgres'), port: await freePort() });
  cleanups.push(() => postgres.stop());
  await postgres.ensureDatabase('summa_bench');
  const databaseUrl = postgres.url('summa_bench');
  const sql = new pg.Pool({ connectionString: databaseUrl, max: 2, application_name: 'bench-commits' });
  sql.on('error', () => {}); // an idle connection ended by the server's stop
  cleanups.push(() => sql.end());
  await migrate(sql, 'calculator', CALCULATOR_MIGRATIONS);
  if (FLUSH_DELAY_MS > 0) {
    await sql.query(`ALTER SYSTEM SET commit_delay = ${FLUSH_DELAY_MS * 1000}`);
    await sql.query('ALTER SYSTEM SET commit_siblings = 0');
    await sql.query('SELECT pg_reload_conf()');
  }
  const postgresPid = await postgres.pid();

  // A relay's LISTEN: notifications are queued for it, as in production.
  const listener = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-commits-listener' });
  listener.on('error', () => {});
  await listener.connect();
  cleanups.push(() => listener.end());
  let notifications = 0;
  listener.on('notification', () => (notifications += 1));
  await listener.query(`LISTEN ${OUTBOX_CHANNEL}`);

  const rounds: Round[] = [];
  for (const calculators of [1, 3]) {
    log(`starting ${calculators} calculator(s)`);
    const ports = await Promise.all(Array.from({ length: calculators * 2 }, () => freePort()));
    const processes = Array.from({ length: calculators }, (_, index) => {
      const httpPort = ports[index * 2]!;
      return new BenchProcess({
        name: `calculator-${index + 1}`,
        entry: 'src/calculator/main.ts',
        env: {
          DATABASE_URL: databaseUrl,
          KAFKA_TOPIC: 'bench.sums',
          CALCULATOR_HTTP_PORT: String(httpPort),
          CALCULATOR_GRPC_PORT: String(ports[index * 2 + 1]!),
        },
        isReady: httpReady(`http://127.0.0.1:${httpPort}/readyz`),
      });
    });
    const stopAll = () => Promise.all(processes.map((p) => p.stop()));
    cleanups.push(stopAll);
    await Promise.all(processes.map((p) => p.start()));
    const targets = ports.filter((_, index) => index % 2 === 0).map((port) => `http://127.0.0.1:${port}`);

    for (const wakeup of ['trigger', 'after-commit'] as const) {
      await sql.query(wakeup === 'trigger' ? TRIGGER_SQL : NO_TRIGGER_SQL);
      await sql.query('TRUNCATE calculator.requests, calculator.outbox');
      const prefix = `${wakeup}-${calculators}`;
      await addLoad(targets, CALLERS, `${prefix}-warmup`, Date.now() + WARMUP_SECONDS * 1000);
      log(`${wakeup}, ${calculators} calculator(s): ${CALLERS} callers for ${SECONDS} s`);

      const samples: { active: number; writes_waiting: number; notifies_waiting: number }[] = [];
      const until = Date.now() + SECONDS * 1000;
      const sampling = (async () => {
        while (Date.now() < until) {
          samples.push((await sql.query(SAMPLE_SQL)).rows[0]);
          await sleep(SAMPLE_EVERY_MS);
        }
      })();
      const notificationsBefore = notifications;
      const cpuBefore = { calculators: processes.reduce((sum, p) => sum + cpuSeconds(p.pid), 0), postgres: treeCpuSeconds(postgresPid) };
      const startedRound = Date.now();
      const acked = await addLoad(targets, CALLERS, prefix, until);
      const elapsed = (Date.now() - startedRound) / 1000;
      const cpuAfter = { calculators: processes.reduce((sum, p) => sum + cpuSeconds(p.pid), 0), postgres: treeCpuSeconds(postgresPid) };
      await sampling;

      const mean = (values: number[]) => (values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length);
      const round_: Round = {
        wakeup,
        calculators,
        addsPerSecond: Math.round(acked / elapsed),
        samplesWithWriteWaiting: round(samples.filter((s) => s.writes_waiting > 0).length / Math.max(1, samples.length), 3),
        meanWritesWaiting: round(mean(samples.map((s) => s.writes_waiting))),
        maxWritesWaiting: Math.max(0, ...samples.map((s) => s.writes_waiting)),
        meanNotifiesWaiting: round(mean(samples.map((s) => s.notifies_waiting))),
        meanActive: round(mean(samples.map((s) => s.active))),
        busyTimeWaiting: round(
          samples.reduce((sum, s) => sum + s.writes_waiting + s.notifies_waiting, 0) / Math.max(1, samples.reduce((sum, s) => sum + s.active, 0)),
          3,
        ),
        notificationsReceived: notifications - notificationsBefore,
        cpuMsPerAdd: {
          calculators: round(((cpuAfter.calculators - cpuBefore.calculators) * 1000) / Math.max(1, acked), 3),
          postgres: round(((cpuAfter.postgres - cpuBefore.postgres) * 1000) / Math.max(1, acked), 3),
        },
        samples: samples.length,
      };
      rounds.push(round_);
      log(`  ${round_.addsPerSecond} Add/s; writes waiting for the notify lock in ${(round_.samplesWithWriteWaiting * 100).toFixed(1)}% of samples`);
    }
    await stopAll();
  }

  printTable(rounds);
  await mkdir(RESULTS_DIR, { recursive: true });
  const result = {
    startedAt: startedAt.toISOString(),
    command: `npm run bench:commits -- --seconds ${SECONDS} --callers ${CALLERS} --flush-delay-ms ${FLUSH_DELAY_MS}`,
    flushDelayMs: FLUSH_DELAY_MS,
    loadAverageAtStart: loadAtStart,
    cpus: os.cpus().length,
    rounds,
  };
  await writeFile(path.join(RESULTS_DIR, 'commit-parallelism.json'), `${JSON.stringify(result, null, 2)}\n`);
  log(`wrote ${path.relative(repoRoot, path.join(RESULTS_DIR, 'commit-parallelism.json'))}`);
}

function printTable(rounds: Round[]): void {
  const rows = rounds.map((r) => [
    r.wakeup,
    String(r.calculators),
    String(r.addsPerSecond),
    `${(r.samplesWithWriteWaiting * 100).toFixed(1)}%`,
    `${r.meanWritesWaiting} / ${r.maxWritesWaiting}`,
    String(r.meanNotifiesWaiting),
    String(r.meanActive),
    `${(r.busyTimeWaiting * 100).toFixed(1)}%`,
    String(r.notificationsReceived),
    `${r.cpuMsPerAdd.calculators} / ${r.cpuMsPerAdd.postgres}`,
  ]);
  const header = ['wake-up', 'calculators', 'Add/s', 'samples with a write waiting', 'writes waiting mean / max', 'NOTIFYs waiting', 'active sessions', 'busy time waiting for the lock', 'notifications', 'CPU ms/Add calc / PG'];
  console.log(`| ${header.join(' | ')} |`);
  console.log(`| ${header.map(() => '---').join(' | ')} |`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => cleanUp());
