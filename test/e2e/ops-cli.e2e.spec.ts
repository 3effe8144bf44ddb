import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readRunState } from '../../src/cli/run-state.ts';
import type { LoadSummary } from '../../src/cli/load-command.ts';
import type { WatchReading } from '../../src/cli/watch-command.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { sleep } from '../../tools/load/add-load.ts';
import { Launcher, processesOf } from '../support/launcher-process.ts';
import { createTestDatabase, testKafkaBrokers, uniqueName, type TestDatabase } from '../support/test-environment.ts';

const SUMMA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/summa.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * summa logs, stop, load and watch against a real `npm start` (its services on the suite's
 * PostgreSQL and Kafka). The commands find the services through the run state alone.
 */
describe('the operator commands against a running npm start', { timeout: 240_000 }, () => {
  let database: TestDatabase;
  let dataDir: string;
  let launcher: Launcher;
  let closedPort: number;

  const cliEnv = (extra: Record<string, string> = {}) => {
    const env: NodeJS.ProcessEnv = { ...process.env, SUMMA_DATA_DIR: dataDir, ...extra };
    for (const name of ['CALCULATOR_GRPC_ADDRESS', 'TOTALS_URL', 'TLS_CA_FILE'] as const) if (!(name in extra)) delete env[name];
    return env;
  };
  const summa = (args: string[], extra: Record<string, string> = {}) =>
    new Promise<Run>((resolve) => {
      execFile(process.execPath, [SUMMA, ...args], { env: cliEnv(extra), timeout: 60_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
      );
    });

  /** The command on a terminal of its own (util-linux script), its output as the terminal got it. */
  const summaOnTerminal = (args: string[]) =>
    new Promise<Run>((resolve) => {
      execFile('script', ['-qefc', [process.execPath, SUMMA, ...args].join(' '), '/dev/null'], { env: cliEnv(), timeout: 60_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
      );
    });

  before(async () => {
    database = await createTestDatabase('ops_cli');
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-ops-cli-'));
    const [grpc, calculatorHttp, relayHttp, totalsHttp] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    closedPort = await freePort();
    launcher = new Launcher({
      SUMMA_DATA_DIR: dataDir,
      DATABASE_URL: database.url,
      KAFKA_BROKERS: testKafkaBrokers().join(','),
      KAFKA_TOPIC: uniqueName('ops-cli-sums'),
      KAFKA_TOPIC_PARTITIONS: '2',
      TOTALS_GROUP_ID: uniqueName('ops-cli-totals'),
      CALCULATOR_GRPC_PORT: String(grpc),
      CALCULATOR_HTTP_PORT: String(calculatorHttp),
      RELAY_HTTP_PORT: String(relayHttp),
      TOTALS_HTTP_PORT: String(totalsHttp),
    });
    await launcher.waitFor('Summa is running.', 180_000);
  });

  after(async () => {
    if (launcher?.child.exitCode === null) await launcher.interrupt();
    for (const { pid } of dataDir ? processesOf(dataDir) : []) process.kill(pid, 'SIGKILL');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    await database?.drop();
  });

  it('each command explains itself with --help: usage, examples, exit codes', async () => {
    for (const command of ['logs', 'stop', 'load', 'watch']) {
      const run = await summa([command, '--help']);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`^usage: summa ${command}`));
      assert.match(run.stdout, /\nexamples:\n/);
      assert.match(run.stdout, /\nexit codes:\n/);
    }
    const bad = await summa(['load', '--rate', '5', '--concurrency', '2']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^summa load: give --rate or --concurrency, not both\n/);
  });

  it('summa logs shows each service its own file, and names the known ones for an unknown name', async () => {
    const state = await readRunState(dataDir);
    for (const name of ['calculator', 'relay', 'totals']) {
      const logFile = state!.components.find((component) => component.name === name)!.logFile;
      assert.equal(logFile, path.join(dataDir, 'logs', `${name}.log`));
      assert.ok(existsSync(logFile!), `${logFile} exists`);
    }
    // The launcher's terminal still shows the services' own lines.
    assert.match(launcher.output, /"name":"calculator".*"msg":"ready"/);

    const all = await summa(['logs']);
    assert.equal(all.code, 0, all.stderr);
    for (const name of ['calculator', 'relay', 'totals']) assert.match(all.stdout, new RegExp(`^${name}\\s* \\| .*"msg":"ready"`, 'm'));

    const one = await summa(['logs', 'totals', '-n', '100']);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /^\{.*"msg":"ready"/m, 'one service: its lines as they are, without a prefix');
    assert.doesNotMatch(one.stdout, /"name":"calculator"/);

    const unknown = await summa(['logs', 'calculatr']);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stderr, 'summa logs: no component named "calculatr"; known: calculator, relay, totals\n');
  });

  it('summa load sends for a few seconds, shows progress, and checks the total moved by exactly what was acknowledged', async () => {
    const run = await summa(['load', '--concurrency', '4', '--duration', '2', '--ids-repeat', '20', '--json']);
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    const summary = JSON.parse(run.stdout) as LoadSummary;
    assert.equal(summary.check.passed, true, summary.check.message);
    assert.ok(summary.acknowledged > 0);
    assert.equal(summary.errors, 0, JSON.stringify(summary.errorsByStatus));
    assert.ok(summary.repeats.sent > 0, 'some ids were sent again');
    assert.equal(summary.repeats.replayed, summary.repeats.sent, 'every repeat was answered replayed');
    assert.equal(summary.check.countDelta, summary.acknowledged - summary.repeats.sent, 'a repeat is not counted again');
    assert.equal(BigInt(summary.check.after.total) - BigInt(summary.check.before.total), BigInt(summary.check.expectedTotalDelta));
    assert.ok(summary.latencyMs.p50 !== null && summary.latencyMs.p99 !== null && summary.latencyMs.p50 <= summary.latencyMs.p99);
    // Not a terminal: plain progress lines, no carriage returns.
    assert.match(run.stderr, /^sent \d+ {2}acked \d+ {2}errors 0 {2}\d+\/s {2}p50 [\d.]+ ms {2}p99 [\d.]+ ms/m);
    assert.doesNotMatch(run.stderr, /\r/);

    const paced = await summa(['load', '--rate', '40', '--duration', '1']);
    assert.equal(paced.code, 0, `${paced.stdout}\n${paced.stderr}`);
    assert.match(paced.stdout, /rate 40\/s/);
    assert.match(paced.stdout, /^check passed: the total moved by exactly the \d+ acknowledged sums$/m);

    // On a terminal the progress line is redrawn in place.
    const onTerminal = await summaOnTerminal(['load', '--concurrency', '2', '--duration', '1.5']);
    assert.equal(onTerminal.code, 0, onTerminal.stdout);
    assert.ok((onTerminal.stdout.match(/\r\x1b\[2Ksent \d+/g) ?? []).length >= 2, JSON.stringify(onTerminal.stdout));
    assert.match(onTerminal.stdout, /check passed/);
  });

  it('summa add, total and sum find the services through the run state', async () => {
    const add = await summa(['add', '2', '3', '--id', 'ops-cli-1']);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /^2 \+ 3 = 5 /);
    let sum: Run = { code: -1, stdout: '', stderr: '' };
    for (const deadline = Date.now() + 20_000; Date.now() < deadline && sum.code !== 0; await sleep(200)) sum = await summa(['sum', 'ops-cli-1']);
    assert.equal(sum.code, 0, sum.stdout + sum.stderr);
    const total = await summa(['total']);
    assert.equal(total.code, 0, total.stderr);
    assert.match(total.stdout, /^total: -?\d+ {2}\(\d+ sums applied\)\n$/);
  });

  it('summa watch reads the total and the rates, --count times', async () => {
    const run = await summa(['watch', '--count', '2', '--interval', '0.3', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const readings = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as WatchReading);
    assert.equal(readings.length, 2);
    assert.ok(BigInt(readings[0]!.total) !== 0n && readings[0]!.count > 0, 'the loads above are in the total');
    assert.equal(readings[0]!.appliedPerSecond, null);
    assert.equal(typeof readings[1]!.appliedPerSecond, 'number');
    assert.equal(typeof readings[1]!.acceptedPerSecond, 'number', 'the calculator metrics were read');

    const text = await summa(['watch', '--count', '1']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^\d\d:\d\d:\d\d {2}total -?\d+ {2}count \d+ {2}applied - {2}accepted -\n$/);

    const onTerminal = await summaOnTerminal(['watch', '--count', '2', '--interval', '0.3']);
    assert.equal(onTerminal.code, 0, onTerminal.stdout);
    assert.equal((onTerminal.stdout.match(/\r\x1b\[2K\d\d:\d\d:\d\d {2}total /g) ?? []).length, 2, JSON.stringify(onTerminal.stdout));
  });

  it('a service that is down is named with its address, in one line, exit code 4', async () => {
    const totalsDown = { TOTALS_URL: `http://127.0.0.1:${closedPort}` };
    for (const args of [['watch', '--count', '1'], ['load', '--duration', '1']]) {
      const run = await summa(args, totalsDown);
      assert.equal(run.code, 4, `${args.join(' ')}: ${run.stderr}`);
      assert.equal(run.stderr, `summa ${args[0]}: the totals service is down at http://127.0.0.1:${closedPort} (connection refused)\n`);
    }
    for (const args of [['total'], ['sum', 'some-id']]) {
      const run = await summa(args, totalsDown);
      assert.equal(run.code, 4, `${args.join(' ')}: ${run.stderr}`);
      assert.equal(run.stderr, `summa: the totals service is down at http://127.0.0.1:${closedPort} (connection refused)\n`);
    }
    const calculatorDown = await summa(['load', '--duration', '1'], { CALCULATOR_GRPC_ADDRESS: `127.0.0.1:${closedPort}` });
    assert.equal(calculatorDown.code, 4, calculatorDown.stderr);
    assert.match(calculatorDown.stderr, new RegExp(`^summa load: the calculator is down at 127\\.0\\.0\\.1:${closedPort} \\(.+\\)\\n$`));
  });

  it('summa stop stops it from another terminal; logs -f shows the services going and ends with it', async () => {
    const follower = spawn(process.execPath, [SUMMA, 'logs', '-f', '-n', '0'], { env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let followed = '';
    follower.stdout.on('data', (chunk: Buffer) => (followed += chunk.toString()));
    const followerExit = new Promise<number | null>((resolve) => follower.once('exit', (code) => resolve(code)));
    await sleep(1_000);

    const stop = await summa(['stop']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, /^stopped Summa \(single, launcher pid \d+, 3 components\) in [\d.]+ s\n$/);
    assert.equal(await launcher.exited, 0, launcher.output);
    assert.deepEqual(processesOf(dataDir).filter(({ pid }) => pid !== follower.pid), [], 'nothing of it is left');

    const outcome = await Promise.race([followerExit, sleep(10_000).then(() => 'still following after 10 s')]);
    assert.equal(outcome, 0);
    assert.match(followed, /^totals\s* \| .*"msg":"shutting down"/m);

    const again = await summa(['stop']);
    assert.equal(again.code, 3);
    assert.equal(again.stderr, `summa stop: nothing is running from ${dataDir}\n`);
    const json = await summa(['stop', '--json']);
    assert.equal(json.code, 3);
    assert.deepEqual(JSON.parse(json.stdout), { stopped: false, running: false, dataDir, message: `nothing is running from ${dataDir}` });

    // The logs stay readable once it has stopped.
    const left = await summa(['logs', 'relay']);
    assert.equal(left.code, 0, left.stderr);
    assert.match(left.stdout, /"msg":"shutting down"/);
  });
});
