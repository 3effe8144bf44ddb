// `npm test`: starts one real PostgreSQL server and one real Kafka broker for the whole run, then
// runs every *.spec.ts file under node's test runner. Each test file makes its own database and
// topics on them, so files stay isolated while the servers start only once.
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startKafkaBroker } from '../tools/local-stack/kafka-broker.ts';
import { startPostgresServer } from '../tools/local-stack/postgres-server.ts';
import { freePort } from '../tools/lib/free-port.ts';
import { isCI, runSetupScript, setupDir, setupScriptsFor, toolOfSetupScript, toolReport, toolsDeclaredIn, type SetupFailure } from '../tools/lib/tools.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// `--suite cluster` runs the long tests under test/cluster/ (each starts a multi-node topology of its
// own), `--suite cdc` those under test/cdc/ (each starts Kafka Connect with Debezium, one more JVM);
// without it those are left out, so `npm test` stays quick. Other arguments filter by path.
const argv = process.argv.slice(2);
const suiteIndex = argv.indexOf('--suite');
const suite = suiteIndex >= 0 ? argv[suiteIndex + 1] : undefined;
const filters = suiteIndex >= 0 ? argv.filter((_, index) => index !== suiteIndex && index !== suiteIndex + 1) : argv;
const SUITES = ['cluster', 'cdc'];
if (suite !== undefined && !SUITES.includes(suite)) {
  console.error(`unknown --suite ${JSON.stringify(suite)}; the ones there are: ${SUITES.join(', ')}`);
  process.exit(2);
}
const suiteOf = (file: string) => SUITES.find((name) => file.startsWith(path.join('test', name) + path.sep));

async function specFiles({ all = false } = {}): Promise<string[]> {
  const entries = await readdir(path.join(root, 'test'), { recursive: true });
  return entries
    .filter((entry) => entry.endsWith('.spec.ts'))
    .map((entry) => path.join('test', entry))
    .filter((file) => all || suiteOf(file) === suite)
    .filter((file) => all || filters.length === 0 || filters.some((filter) => file.includes(filter)))
    .sort();
}

const files = await specFiles();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}

// Tools the tests need beyond npm packages: each spec file declares its own (missingTool('NAME')),
// and tools/setup/NN-NAME.sh provides NAME (idempotent, quick once installed). One that cannot be
// had skips the tests that need it, saying why; in CI, which runs every test, it stops the run.
const needs = new Map<string, string[]>();
for (const file of await specFiles({ all: true })) needs.set(file, toolsDeclaredIn(await readFile(path.join(root, file), 'utf8')));
const scripts = (await readdir(setupDir)).filter((name) => name.endsWith('.sh')).sort();
const failures: SetupFailure[] = [];
for (const script of setupScriptsFor(scripts, needs, files)) {
  const result = await runSetupScript(path.join(setupDir, script), { cwd: root });
  if (!result.ok) failures.push({ tool: toolOfSetupScript(script), script, reason: result.reason });
}
const report = toolReport(failures, new Map(files.map((file) => [file, needs.get(file) ?? []])), { ci: isCI() });
for (const line of report.lines) console.error(line);
if (report.abort) process.exit(1);

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
    // For tests that describe these servers as parts of a run (summa status asks whether the pid lives).
    SUMMA_TEST_KAFKA_PID: String(kafka.pid),
    SUMMA_TEST_POSTGRES_PID: String(await postgres.pid()),
    SUMMA_MISSING_TOOLS: JSON.stringify(report.missing),
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
// Again at the end, where it is seen: which tests were skipped for want of a tool.
if (report.lines.length > 0) console.error(['', 'Not every tool the tests need could be had:', ...report.lines].join('\n'));
process.exit(exitCode);
