// `npm run bench:idle [-- --samples N] [--gap-ms N] [--after]`: only the idle visibility figure of the
// benchmark (idle-latency.ts), on the same stack as its P phase (embedded PostgreSQL, one Kafka
// broker, the three services from src/), in a minute instead of the whole benchmark's several.
// The services inherit this process's environment, so a setting can be compared by running it
// twice, e.g. `RELAY_LINGER_MS=0 npm run bench:idle`. With --after each Add is waited for with one
// GET /total?after=<its request id> instead of polling GET /total.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startKafkaBroker } from '../local-stack/kafka-broker.ts';
import { startPostgresServer } from '../local-stack/postgres-server.ts';
import { freePort } from '../lib/free-port.ts';
import { BenchProcess, httpReady } from './bench-process.ts';
import { benchCleanups } from './cleanups.ts';
import { measureIdleVisibility } from './idle-latency.ts';

const { values } = parseArgs({ options: { samples: { type: 'string', default: '100' }, 'gap-ms': { type: 'string', default: '200' }, after: { type: 'boolean', default: false } } });
const samples = Number(values.samples);
const gapMs = Number(values['gap-ms']);
if (!Number.isInteger(samples) || samples < 1) throw new Error(`--samples must be a positive whole number, got ${values.samples}`);
if (!Number.isInteger(gapMs) || gapMs < 0) throw new Error(`--gap-ms must be a whole number of milliseconds, got ${values['gap-ms']}`);

const log = (message: string) => console.error(`[bench:idle ${new Date().toISOString().slice(11, 19)}] ${message}`);
const { cleanups, cleanUp } = benchCleanups(log);

async function main(): Promise<void> {
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-idle-'));
  // PostgreSQL runs as its own user when started as root, and must reach its cluster folder.
  await chmod(workDir, 0o755);
  cleanups.push(() => rm(workDir, { recursive: true, force: true }));
  const postgres = await startPostgresServer({ dataDir: path.join(workDir, 'postgres'), port: await freePort() });
  cleanups.push(() => postgres.stop());
  const kafka = await startKafkaBroker({ dataDir: path.join(workDir, 'kafka'), port: 0, flushEveryRecord: true });
  cleanups.push(() => kafka.stop());
  await postgres.ensureDatabase('summa_bench');
  const databaseUrl = postgres.url('summa_bench');
  const sql = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  cleanups.push(() => sql.end());
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
  const service = (name: 'calculator' | 'relay' | 'totals', port: number) =>
    new BenchProcess({ name, entry: `dist/${name}/main.js`, env, isReady: httpReady(`http://127.0.0.1:${port}/readyz`) });
  const services = [service('calculator', calculatorPort), service('relay', relayPort), service('totals', totalsPort)];
  cleanups.push(() => Promise.all(services.map((s) => s.stop())));
  await services[0]!.start();
  await Promise.all([services[1]!.start(), services[2]!.start()]);
  const loadBefore = os.loadavg()[0]!;
  const waitWith = values.after ? 'after' : 'poll';
  log(`${samples} Adds, ${gapMs} ms apart, seen by ${waitWith === 'after' ? 'GET /total?after=' : 'polling GET /total'}`);
  const idle = await measureIdleVisibility({ grpcTarget: `127.0.0.1:${grpcPort}`, totalsUrl: `http://127.0.0.1:${totalsPort}`, samples, gapMs, sql, waitWith });
  console.log(JSON.stringify({ wait_with: waitWith, idle_e2e_p50_ms: idle.p50Ms, idle_e2e_p99_ms: idle.p99Ms, ...idle, load_average: [loadBefore, os.loadavg()[0]!].map((l) => Number(l.toFixed(2))) }));
}

let exitCode = 0;
try {
  await main();
} catch (error) {
  console.error(`bench:idle failed: ${error instanceof Error ? error.stack : String(error)}`);
  exitCode = 1;
}
await cleanUp();
process.exit(exitCode);
