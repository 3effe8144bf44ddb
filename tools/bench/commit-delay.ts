// `npm run bench:commit-delay [-- --rate N] [--seconds N] [--settings delay:siblings,...]`
//
// What PostgreSQL's commit_delay / commit_siblings do to the calculator's WAL flushes and its ack
// latency, apart from the rest of the pipeline: one embedded PostgreSQL and one calculator
// (compiled, as it ships), k6 calling Add at a fixed open-loop rate for each setting in turn, on the
// same server (the settings are reloaded between windows). A fixed rate, rather than half of a
// measured saturation, keeps the windows comparable on a machine shared with other work; the
// calculator alone needs a fraction of a core at the default 500 Add/s.
// Prints a table and writes tools/bench/results/commit-delay.json.
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startPostgresServer } from '../local-stack/postgres-server.ts';
import { freePort } from '../lib/free-port.ts';
import { repoRoot } from '../lib/paths.ts';
import { BenchProcess, httpReady } from './bench-process.ts';
import { benchCleanups } from './cleanups.ts';
import { runLoad } from './k6-load.ts';
import { pinnedTool } from '../lib/tools.ts';

const { values: flags } = parseArgs({
  options: {
    rate: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '10' },
    // commit_delay µs : commit_siblings, one window each, in this order (PostgreSQL's default 0:5 first and last).
    settings: { type: 'string', default: '0:5,200:2,1000:2,1000:0,3000:0,0:5' },
  },
});
const RATE = Number(flags.rate);
const SECONDS = Number(flags.seconds);
if (!(RATE > 0) || !(SECONDS > 0)) throw new Error('--rate and --seconds must be positive numbers');

const SETTINGS = flags.settings.split(',').map((pair) => {
  const [delay, siblings] = pair.split(':').map(Number);
  if (!Number.isInteger(delay) || !Number.isInteger(siblings)) throw new Error(`--settings takes delay:siblings pairs (e.g. 0:5,1000:2), got ${pair}`);
  return [delay!, siblings!] as const;
});
/** Busy backends report I/O statistics at most once a second, idle ones after 10 s. */
const STATS_FLUSH_MS = 11_500;
const log = (message: string) => console.error(`[commit-delay ${new Date().toISOString().slice(11, 19)}] ${message}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const { cleanups, cleanUp } = benchCleanups(log);

async function main(): Promise<void> {
  const k6 = await pinnedTool('k6');
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-commit-delay-'));
  await chmod(workDir, 0o755);
  cleanups.push(() => rm(workDir, { recursive: true, force: true }));
  const postgres = await startPostgresServer({ dataDir: path.join(workDir, 'postgres'), port: await freePort() });
  cleanups.push(() => postgres.stop());
  await postgres.ensureDatabase('summa_bench');
  const sql = new pg.Pool({ connectionString: postgres.url('summa_bench'), max: 2 });
  cleanups.push(() => sql.end());
  const [grpcPort, httpPort] = await Promise.all([freePort(), freePort()]);
  const calculator = new BenchProcess({
    name: 'calculator',
    entry: 'dist/calculator/main.js',
    env: { DATABASE_URL: postgres.url('summa_bench'), KAFKA_BROKERS: '127.0.0.1:9', KAFKA_TOPIC: 'bench.sums', CALCULATOR_GRPC_PORT: String(grpcPort), CALCULATOR_HTTP_PORT: String(httpPort) },
    isReady: httpReady(`http://127.0.0.1:${httpPort}/readyz`),
  });
  cleanups.push(() => calculator.stop());
  await calculator.start();
  // All of the server's WAL fsyncs (the calculator is its only client but for this session): a
  // backend's own counters go with it when the pool closes an idle connection.
  const fsyncs = async () => Number((await sql.query<{ n: string }>(`SELECT coalesce(sum(fsyncs), 0)::text AS n FROM pg_stat_io WHERE object = 'wal'`)).rows[0]!.n);
  const target = `127.0.0.1:${grpcPort}`;
  const runId = Date.now().toString(36);
  await runLoad(k6, target, `${runId}-w`, { mode: 'open', rate: RATE, durationSeconds: 3 });

  const rows = [];
  for (const [delay, siblings] of SETTINGS) {
    await sql.query(`ALTER SYSTEM SET commit_delay = ${delay}`);
    await sql.query(`ALTER SYSTEM SET commit_siblings = ${siblings}`);
    await sql.query('SELECT pg_reload_conf()');
    await sleep(STATS_FLUSH_MS);
    const before = await fsyncs();
    const load = await runLoad(k6, target, `${runId}-${delay}-${siblings}`, { mode: 'open', rate: RATE, durationSeconds: SECONDS });
    await sleep(STATS_FLUSH_MS);
    const after = await fsyncs();
    const row = {
      commit_delay_us: delay,
      commit_siblings: siblings,
      acked_per_second: Math.round(load.ackedPerSecond),
      dropped: load.dropped,
      ack_p50_ms: Number(load.p50Ms.toFixed(2)),
      ack_p99_ms: Number(load.p99Ms.toFixed(2)),
      fsyncs_per_request: Number(((after - before) / load.acked).toFixed(4)),
    };
    log(JSON.stringify(row));
    rows.push(row);
  }
  const results = { date: new Date().toISOString(), command: `npm run bench:commit-delay -- --rate ${RATE} --seconds ${SECONDS} --settings ${flags.settings}`, load_average: os.loadavg().map((v) => Number(v.toFixed(2))), rows };
  const dir = path.join(repoRoot, 'tools', 'bench', 'results');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'commit-delay.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.table(rows);
}

try {
  await main();
} catch (error) {
  log(`failed: ${error instanceof Error ? error.stack : String(error)}`);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
