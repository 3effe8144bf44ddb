// `npm test`: starts one real PostgreSQL server and one real Kafka broker for the whole run, then
// runs every *.spec.ts file under node's test runner. Each test file makes its own database and
// topics on them, so files stay isolated while the servers start only once.
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startKafkaBroker } from '../tools/local-stack/kafka-broker.ts';
import { startPostgresServer } from '../tools/local-stack/postgres-server.ts';
import { freePort } from '../tools/lib/free-port.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const filters = process.argv.slice(2);

async function specFiles(): Promise<string[]> {
  const entries = await readdir(path.join(root, 'test'), { recursive: true });
  return entries
    .filter((entry) => entry.endsWith('.spec.ts'))
    .map((entry) => path.join('test', entry))
    .filter((file) => filters.length === 0 || filters.some((filter) => file.includes(filter)))
    .sort();
}

const files = await specFiles();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}

// Tools the tests need beyond npm packages (each script is idempotent and quick once installed).
const setupDir = path.join(root, 'tools', 'setup');
for (const script of (await readdir(setupDir)).filter((name) => name.endsWith('.sh')).sort()) {
  const result = spawnSync('bash', [path.join(setupDir, script)], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) {
    console.error(`tools/setup/${script} failed`);
    process.exit(1);
  }
}

const workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-test-'));
await chmod(workDir, 0o755);
console.log(`starting PostgreSQL and Kafka for the tests in ${workDir}`);
const postgres = await startPostgresServer({ dataDir: path.join(workDir, 'postgres'), port: await freePort() });
const kafka = await startKafkaBroker({ dataDir: path.join(workDir, 'kafka'), port: 0 }).catch(async (error: unknown) => {
  await postgres.stop();
  throw error;
});

const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: {
    ...process.env,
    SUMMA_TEST_POSTGRES_URL: postgres.url('postgres'),
    SUMMA_TEST_KAFKA_BROKERS: kafka.brokers,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  },
});
const stopChild = () => child.kill('SIGTERM');
process.on('SIGINT', stopChild);
process.on('SIGTERM', stopChild);
process.on('disconnect', stopChild);

const exitCode = await new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
await Promise.allSettled([kafka.stop(), postgres.stop()]);
await rm(workDir, { recursive: true, force: true }).catch(() => {});
process.exit(exitCode);
