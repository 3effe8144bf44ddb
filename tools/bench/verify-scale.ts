// `npm run bench:verify -- [--requests N] [--faults] [--keep]`
//
// How long `summa verify` takes, and how much memory, on a large history: N requests, each applied
// once, written with generate_series into a fresh embedded PostgreSQL in a temp dir (the load is
// not measured), into the generation each table writes to (both tables are partitioned by period;
// nothing is dropped here, so every row is audited one by one). Then `summa verify --json` runs
// once as a child process, exactly as an operator runs it, under /usr/bin/time -v when there is one
// (else its VmHWM is polled from /proc). With --faults a few of every problem are planted first,
// so the run also takes the paths that find them.
// Prints the report and a summary, and writes tools/bench/results/verify-scale.json.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { CALCULATOR_MIGRATIONS } from '../../src/calculator/schema.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { currentGenerationSql } from '../../src/platform/db/period-partitions.ts';
import { TOTALS_MIGRATIONS } from '../../src/totals/schema.ts';
import { formatReport, type InvariantReport } from '../../src/cli/invariant-audit.ts';
import { startPostgresServer, type PostgresServer } from '../local-stack/postgres-server.ts';
import { freePort } from '../lib/free-port.ts';
import { repoRoot } from '../lib/paths.ts';
import { peakRssMb } from './process-stats.ts';

const { values: flags } = parseArgs({
  options: {
    requests: { type: 'string', default: '10000000' },
    faults: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const REQUESTS = Number(flags.requests);
if (!Number.isInteger(REQUESTS) || REQUESTS < 100) throw new Error(`--requests must be a whole number of at least 100, got ${flags.requests}`);
const CHUNK = 1_000_000;
const TIME = '/usr/bin/time';
const RESULTS_FILE = path.join(repoRoot, 'tools', 'bench', 'results', 'verify-scale.json');

const log = (message: string) => console.error(`[bench:verify ${new Date().toISOString().slice(11, 19)}] ${message}`);

let postgres: PostgresServer | undefined;
let workDir: string | undefined;
async function cleanUp(): Promise<void> {
  await postgres?.stop().catch(() => {});
  postgres = undefined;
  if (workDir && !flags.keep) await rm(workDir, { recursive: true, force: true }).catch(() => {});
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping`);
    void cleanUp().finally(() => process.exit(130));
  });
}

// Event ids derive from the request number, so both tables are generated independently; md5
// spreads them over the uuid space as random ids are.
const REQUESTS_CHUNK_SQL = `INSERT INTO calculator.requests (request_id, num1, num2, sum, event_id, accepted_at, generation)
SELECT 'bench-' || i, i, i + 1, 2 * i + 1, md5('bench-' || i)::uuid, now() - interval '1 hour', ${currentGenerationSql('calculator', 'requests')}
FROM generate_series($1::int8, $2::int8) AS i`;
const APPLIED_CHUNK_SQL = `INSERT INTO totals.applied_events (event_id, request_id, amount, accepted_at, applied_at, kafka_partition, kafka_offset, generation)
SELECT md5('bench-' || i)::uuid, 'bench-' || i, 2 * i + 1, now() - interval '1 hour', now() - interval '59 minutes', (i % 3)::int, i / 3,
  ${currentGenerationSql('totals', 'applied_events')}
FROM generate_series($1::int8, $2::int8) AS i`;

/** A few of each problem: lost, applied twice, without request, mismatched, outbox orphan, a stuck outbox event. */
const FAULTS_SQL = [
  // Lost: three applied events vanish.
  `DELETE FROM totals.applied_events WHERE request_id IN ('bench-7', 'bench-70', 'bench-700')`,
  // Applied twice: a second event under the same request id (which no request produced).
  `INSERT INTO totals.applied_events (event_id, request_id, amount, accepted_at, kafka_partition, kafka_offset, generation)
   SELECT gen_random_uuid(), request_id, amount, accepted_at, 0, -1, generation FROM totals.applied_events WHERE request_id IN ('bench-11', 'bench-12')`,
  // Mismatched: an amount that is not the accepted sum.
  `UPDATE totals.applied_events SET amount = amount + 1 WHERE request_id = 'bench-13'`,
  // An outbox event no request has, an hour old: also a stuck relay.
  `INSERT INTO calculator.outbox (event_id, topic, message_key, payload, created_at) VALUES (gen_random_uuid(), 'sums', 'nobody', '{}', now() - interval '1 hour')`,
];

async function main(): Promise<void> {
  workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-bench-verify-'));
  // PostgreSQL runs as its own user when started as root, and must reach its cluster folder.
  await chmod(workDir, 0o755);
  postgres = await startPostgresServer({ dataDir: path.join(workDir, 'postgres'), port: await freePort() });
  await postgres.ensureDatabase('summa');
  const url = postgres.url('summa');
  const sql = new pg.Pool({ connectionString: url, max: 2 });
  sql.on('error', () => {});
  try {
    await migrate(sql, 'calculator', CALCULATOR_MIGRATIONS);
    await migrate(sql, 'totals', TOTALS_MIGRATIONS);
    // Fewer checkpoints during the bulk load; the audit itself runs on the defaults otherwise.
    await sql.query("ALTER SYSTEM SET max_wal_size = '8GB'");
    await sql.query('SELECT pg_reload_conf()');

    const loadStarted = performance.now();
    // Loaded without their keys and indexes, which are then built once, as a restore does: the same
    // definitions the migrations made, and the same heap order (by request number, not event id).
    const keys = await dropKeys(sql);
    for (let first = 1; first <= REQUESTS; first += CHUNK) {
      const last = Math.min(REQUESTS, first + CHUNK - 1);
      await sql.query(REQUESTS_CHUNK_SQL, [first, last]);
      await sql.query(APPLIED_CHUNK_SQL, [first, last]);
      log(`loaded ${last.toLocaleString('en-US')} of ${REQUESTS.toLocaleString('en-US')} requests and their applied events`);
    }
    log('building the keys and indexes');
    await restoreKeys(sql, keys);
    await sql.query(
      `INSERT INTO totals.partition_totals AS p (partition, total, count)
       SELECT kafka_partition, sum(amount), count(*) FROM totals.applied_events GROUP BY kafka_partition
       ON CONFLICT (partition) DO UPDATE SET total = p.total + excluded.total, count = p.count + excluded.count`,
    );
    if (flags.faults) for (const statement of FAULTS_SQL) await sql.query(statement);
    // What autovacuum would have done by the time anyone audits this much history.
    await sql.query('VACUUM ANALYZE calculator.requests, calculator.outbox, totals.applied_events');
    await sql.query('CHECKPOINT');
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    const sizes = (
      await sql.query<{ bytes: string }>(`SELECT pg_database_size('summa')::text AS bytes`)
    ).rows[0]!;
    log(`loaded in ${loadSeconds.toFixed(0)} s; database ${(Number(sizes.bytes) / 2 ** 30).toFixed(2)} GiB`);

    const tempBefore = await tempBytes(sql);
    log('running summa verify');
    const run = await runVerify(url);
    const tempAfter = await tempBytes(sql);
    let report: (InvariantReport & { verifySeconds: number; exitCode: number }) | undefined;
    try {
      report = JSON.parse(run.stdout);
    } catch {
      // Not a report: what it printed says why.
    }
    console.log(report ? `${formatReport(report)}\nran in ${report.verifySeconds.toFixed(2)} s (its own figure)` : run.stdout.trimEnd());
    if (run.stderr.trim()) console.error(run.stderr.trimEnd());

    const result = {
      at: new Date().toISOString(),
      requests: REQUESTS,
      faults: flags.faults,
      command: 'summa verify --json',
      exitCode: run.exitCode,
      wallSeconds: round(run.wallSeconds),
      // What verify reports of itself: the whole command, and the audit within it.
      verifySeconds: report ? round(report.verifySeconds) : null,
      auditSeconds: report ? round(report.auditSeconds) : null,
      audited: report ? { requests: report.window.requests.audited, appliedEvents: report.window.applied.audited } : null,
      peakRssMb: round(run.peakRssMb, 1),
      rssMeasuredBy: run.measuredBy,
      postgresTempFileMb: round((tempAfter - tempBefore) / 2 ** 20, 1),
      loadSeconds: round(loadSeconds),
      databaseGiB: round(Number(sizes.bytes) / 2 ** 30),
      machine: { cpus: os.cpus().length, memoryGiB: round(os.totalmem() / 2 ** 30, 1), node: process.version },
    };
    await mkdir(path.dirname(RESULTS_FILE), { recursive: true });
    await writeFile(RESULTS_FILE, `${JSON.stringify(result, null, 2)}\n`);
    console.log(
      `\nsumma verify over ${REQUESTS.toLocaleString('en-US')} requests${flags.faults ? ' (with faults)' : ''}: ` +
        `exit ${run.exitCode}, ${result.wallSeconds} s wall, peak RSS ${result.peakRssMb} MB (${run.measuredBy}); ` +
        `PostgreSQL temp files ${result.postgresTempFileMb} MB. Written to ${path.relative(repoRoot, RESULTS_FILE)}`,
    );
    const expected = flags.faults ? 1 : 0;
    if (run.exitCode !== expected) throw new Error(`summa verify exited ${run.exitCode}, expected ${expected}`);
  } finally {
    await sql.end().catch(() => {});
  }
}

const BULK_TABLES = `'calculator.requests'::regclass, 'totals.applied_events'::regclass`;

/** Drops the keys and indexes of the two big tables; returns the statements that build them again. */
async function dropKeys(sql: pg.Pool): Promise<string[]> {
  const { rows: constraints } = await sql.query<{ tab: string; name: string; def: string }>(
    `SELECT conrelid::regclass::text AS tab, conname AS name, pg_get_constraintdef(oid) AS def
     FROM pg_constraint WHERE conrelid IN (${BULK_TABLES}) AND contype IN ('p', 'u')`,
  );
  const { rows: indexes } = await sql.query<{ name: string; def: string }>(
    `SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS def FROM pg_index
     WHERE indrelid IN (${BULK_TABLES}) AND indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE contype IN ('p', 'u'))`,
  );
  for (const index of indexes) await sql.query(`DROP INDEX ${index.name}`);
  for (const constraint of constraints) await sql.query(`ALTER TABLE ${constraint.tab} DROP CONSTRAINT ${constraint.name}`);
  return [
    ...constraints.map((constraint) => `ALTER TABLE ${constraint.tab} ADD CONSTRAINT ${constraint.name} ${constraint.def}`),
    ...indexes.map((index) => index.def),
  ];
}

async function restoreKeys(sql: pg.Pool, statements: string[]): Promise<void> {
  const client = await sql.connect();
  try {
    await client.query(`SET maintenance_work_mem = '512MB'`);
    for (const statement of statements) await client.query(statement);
  } finally {
    client.release();
  }
}

async function tempBytes(sql: pg.Pool): Promise<number> {
  // The statistics are flushed at most once a second by busy backends.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const { rows } = await sql.query<{ bytes: string }>(`SELECT temp_bytes::text AS bytes FROM pg_stat_database WHERE datname = 'summa'`);
  return Number(rows[0]?.bytes ?? 0);
}

interface VerifyRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  wallSeconds: number;
  peakRssMb: number;
  measuredBy: string;
}

/** Runs `summa verify` once; peak RSS from /usr/bin/time -v, or polled VmHWM without it. */
function runVerify(databaseUrl: string): Promise<VerifyRun> {
  const withTime = existsSync(TIME);
  const summa = [process.execPath, path.join(repoRoot, 'bin', 'summa.mjs'), 'verify', '--json'];
  const [command, ...args] = withTime ? [TIME, '-v', ...summa] : summa;
  const started = performance.now();
  const child = spawn(command!, args, { cwd: repoRoot, env: { ...process.env, DATABASE_URL: databaseUrl }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let timeReport = '';
  let polledPeak = 0;
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (withTime ? (timeReport += chunk) : (stderr += chunk)));
  const poll = withTime ? undefined : setInterval(() => (polledPeak = Math.max(polledPeak, peakRssMb(child.pid!))), 100);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      const wallSeconds = (performance.now() - started) / 1000;
      if (poll) clearInterval(poll);
      if (!withTime) {
        resolve({ exitCode: code, stdout, stderr, wallSeconds, peakRssMb: polledPeak, measuredBy: 'VmHWM polled every 100 ms' });
        return;
      }
      const maxRss = /Maximum resident set size \(kbytes\): (\d+)/.exec(timeReport);
      const exit = /Exit status: (\d+)/.exec(timeReport);
      // What time(1) printed besides its report is the CLI's own stderr.
      const ownStderr = timeReport.split(/\n?\s*Command being timed:/)[0]!.replace(/^Command exited with non-zero status \d+\n?/m, '');
      resolve({
        exitCode: exit ? Number(exit[1]) : code,
        stdout,
        stderr: ownStderr,
        wallSeconds,
        peakRssMb: maxRss ? Number(maxRss[1]) / 1024 : 0,
        measuredBy: '/usr/bin/time -v',
      });
    });
  });
}

const round = (value: number, digits = 2) => Number(value.toFixed(digits));

main()
  .then(cleanUp, async (error: unknown) => {
    console.error(error);
    await cleanUp();
    process.exitCode = 1;
  })
  .finally(() => process.exit());
