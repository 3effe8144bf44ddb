// `npm start -- --cluster` as a real process on ports of its own: nginx spreads the Adds over the
// three calculators, a calculator killed outright costs no Add that carries a request id (a failed
// one is sent again under its id) and comes back with a new pid in the run state, the totals behind
// nginx show the exact total, and a clean stop leaves nothing behind.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readRunState, type RunState } from '../../src/cli/run-state.ts';
import { sleep, waitForTotalCount } from '../../tools/load/add-load.ts';
import { CalculatorClient } from '../../tools/lib/grpc-clients.ts';
import { freeClusterPortOffset, topologyPorts, type Topology } from '../../tools/local-stack/topology.ts';
import { Launcher, listening, processesOf } from '../support/launcher-process.ts';
import { missingTool } from '../support/tools.ts';

/** `summa status --json` on the run in dataDir: its exit code and report. */
function status(dataDir: string): Promise<{ code: number; report: { components: { name: string; role: string; healthy: boolean; detail?: string }[]; warnings?: string[] } }> {
  const summa = path.resolve(import.meta.dirname, '../../bin/summa.mjs');
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [summa, 'status', '--json'], { env: { ...process.env, SUMMA_DATA_DIR: dataDir, SUMMA_STATUS_TIMEOUT_MS: '10000' }, timeout: 90_000 }, (error, stdout) => {
      if (error && typeof error.code !== 'number') return reject(error);
      resolve({ code: typeof error?.code === 'number' ? error.code : 0, report: JSON.parse(stdout) });
    }),
  );
}

/** `summa <args>` on the run in dataDir, as an operator runs it: no address given, only the data folder. */
function summaCli(dataDir: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const summa = path.resolve(import.meta.dirname, '../../bin/summa.mjs');
  const env: NodeJS.ProcessEnv = { ...process.env, SUMMA_DATA_DIR: dataDir };
  delete env.CALCULATOR_GRPC_ADDRESS;
  delete env.TOTALS_URL;
  return new Promise((resolve) =>
    execFile(process.execPath, [summa, ...args], { env, timeout: 90_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

/** The sum of a counter's samples whose line matches `filter`, from a service's /metrics. */
async function counter(httpPort: number, name: string, filter: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) && filter.test(line))
    .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
}

async function httpAdd(port: number, num1: number, num2: number, requestId: string): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/v1/sums`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': requestId },
    body: JSON.stringify({ num1, num2 }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await response.json()) as { sum?: string };
  if (response.status !== 200 && response.status !== 201) throw new Error(`HTTP ${response.status}: ${JSON.stringify(body)}`);
  return body.sum!;
}

interface ConsoleSample {
  at: number;
  total: string | null;
  count: number | null;
  ack: { events: number; p50: number | string | null; p99: number | string | null } | null;
  problems: string[];
}

/** The samples /console/events delivers within withinMs (the stream is closed then). */
async function consoleSamples(base: string, withinMs: number): Promise<ConsoleSample[]> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), withinMs);
  const samples: ConsoleSample[] = [];
  let text = '';
  try {
    const response = await fetch(`${base}/console/events`, { signal: controller.signal });
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    const decoder = new TextDecoder();
    for await (const chunk of response.body!) {
      text += decoder.decode(chunk as Uint8Array, { stream: true });
      for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
        const [event, data] = text.slice(0, end).split('\n');
        text = text.slice(end + 2);
        if (event === 'event: sample') samples.push(JSON.parse(data!.slice('data: '.length)) as ConsoleSample);
      }
    }
  } catch (error) {
    if (!controller.signal.aborted) throw error;
  } finally {
    clearTimeout(timer);
  }
  return samples;
}

describe('npm start -- --cluster', { skip: missingTool('nginx'), timeout: 240_000 }, () => {
  let dataDir: string;
  let topology: Topology;
  let launcher: Launcher | undefined;

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-cluster-'));
    await chmod(dataDir, 0o755); // as root, PostgreSQL runs as "postgres", which must enter it
  });

  after(async () => {
    if (launcher && launcher.child.exitCode === null) await launcher.interrupt();
    for (const { pid } of processesOf(dataDir)) process.kill(pid, 'SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  it('spreads Adds over three calculators behind nginx, survives a kill -9 of one, and stops cleanly', async () => {
    const chosen = await freeClusterPortOffset();
    topology = chosen.topology;
    const nginx = topology.nginx!;
    const calculators = topology.services.filter((service) => service.role === 'calculator');
    launcher = new Launcher({ SUMMA_DATA_DIR: dataDir, SUMMA_PORT_OFFSET: String(chosen.offset) }, ['--cluster']);
    await launcher.waitFor('Summa is running (cluster).', 180_000);

    const state = (await readRunState(dataDir))!;
    assert.equal(state.topology, 'cluster');
    const names = state.components.map((c) => c.name);
    for (const name of ['kafka-1', 'kafka-2', 'kafka-3', 'postgres-primary', 'postgres-replica', 'calculator-1', 'calculator-2', 'calculator-3', 'relay-1', 'relay-2', 'totals-1', 'totals-2', 'totals-3', 'nginx']) {
      assert.ok(names.includes(name), `${name} is in the run state: ${names.join(', ')}`);
    }
    for (const component of state.components) assert.ok(component.pid !== null && processesOf(dataDir).some((p) => p.pid === component.pid), `${component.name} runs`);

    // summa status sees every part healthy: three SASL_SSL brokers (as the admin user), the replica, nginx.
    // Just after the start, an instance whose partition keeper measured while another one was making
    // the first partitions ahead warns of none ahead until it looks again (within a second).
    let first = await status(dataDir);
    for (let tries = 0; first.code === 4 && tries < 5; tries++) {
      await sleep(1_000);
      first = await status(dataDir);
    }
    assert.deepEqual(
      first.report.components.filter((c) => !c.healthy).map((c) => `${c.name}: ${c.detail}`),
      [],
      'every component is healthy',
    );
    assert.equal(first.code, 0, `summa status warns: ${(first.report.warnings ?? []).join('; ')}`);
    assert.deepEqual(
      [...new Set(first.report.components.map((c) => c.role))].sort(),
      ['calculator', 'kafka-broker', 'nginx', 'postgres-primary', 'postgres-replica', 'relay', 'totals'],
    );

    const client = new CalculatorClient(`127.0.0.1:${nginx.grpcPort}`);
    let expected = 0n;
    let count = 0;
    try {
      // nginx spreads both kinds of Add over every calculator (round robin).
      for (let i = 0; i < 12; i++) {
        assert.equal((await client.add({ num1: i, num2: 1, requestId: `spread-grpc-${i}` })).sum, String(i + 1));
        assert.equal(await httpAdd(nginx.httpPort, i, 2, `spread-http-${i}`), String(i + 2));
        expected += BigInt(2 * i + 3);
        count += 2;
      }
      for (const calculator of calculators) {
        assert.ok((await counter(calculator.httpPort, 'grpc_server_handled_total', /grpc_method="Add"/)) > 0, `${calculator.name} served gRPC Adds`);
        assert.ok((await counter(calculator.httpPort, 'http_requests_total', /method="POST",route="\/v1\/sums"/)) > 0, `${calculator.name} served HTTP Adds`);
      }

      // Adds keep coming while one calculator is killed outright; each one that fails is sent again
      // under its own id until it is answered, which counts it once whatever happened to the first try.
      const victim = state.components.find((c) => c.name === 'calculator-2')!;
      let retried = 0;
      const send = async (i: number): Promise<void> => {
        const requestId = `kill-${i}`;
        for (let attempt = 0; ; attempt++) {
          try {
            const sum = i % 2 === 0 ? (await client.add({ num1: i, num2: 7, requestId }, 5_000)).sum : await httpAdd(nginx.httpPort, i, 7, requestId);
            assert.equal(sum, String(i + 7));
            return;
          } catch (error) {
            if (error instanceof assert.AssertionError || attempt >= 20) throw error;
            retried++;
            await sleep(250);
          }
        }
      };
      const total = 300;
      let next = 0;
      const worker = async () => {
        while (next < total) {
          const i = next++;
          if (i === 60) process.kill(victim.pid!, 'SIGKILL');
          await send(i);
        }
      };
      await Promise.all(Array.from({ length: 6 }, worker));
      for (let i = 0; i < total; i++) expected += BigInt(i + 7);
      count += total;
      console.log(`# ${total} Adds while calculator-2 was killed; ${retried} tries were sent again under their id`);

      // The launcher brought it back, with its new pid in the run state.
      let restarted: RunState['components'][number] | undefined;
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        restarted = (await readRunState(dataDir))?.components.find((c) => c.name === 'calculator-2');
        if (restarted?.pid && restarted.pid !== victim.pid) break;
        await sleep(250);
      }
      assert.ok(restarted?.pid && restarted.pid !== victim.pid, `calculator-2 has a new pid in the run state (${restarted?.pid})`);
      assert.ok(processesOf(dataDir).some((p) => p.pid === restarted!.pid), 'the new pid runs');
    } finally {
      client.close();
    }

    // The totals services behind nginx agree on the exact total.
    assert.deepEqual(await waitForTotalCount(`http://127.0.0.1:${nginx.totalsPort}`, count, 60_000), { total: expected.toString(), count });
    // They read it from the streaming replica; the primary on request.
    const eventual = await fetch(`http://127.0.0.1:${nginx.totalsPort}/total`);
    assert.equal(eventual.headers.get('summa-read-source'), 'replica');
    const strong = await fetch(`http://127.0.0.1:${nginx.totalsPort}/total?consistency=strong`);
    assert.equal(strong.headers.get('summa-read-source'), 'primary');
    assert.equal(((await strong.json()) as { total: string }).total, expected.toString());

    // The console through nginx: the page, an Add from its form (forwarded to the calculators'
    // entry point) and the live stream, which nginx must pass on as it comes (X-Accel-Buffering).
    const consoleBase = `http://127.0.0.1:${nginx.totalsPort}`;
    const page = await fetch(`${consoleBase}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>Summa console<\/title>/);
    // The Add is sent while a page watches: the ack latency is that of the last seconds.
    const watched = consoleSamples(consoleBase, 5_000);
    await sleep(1_500);
    const consoleAdd = await fetch(`${consoleBase}/console/sums`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ num1: '40', num2: '2', requestId: 'console-through-nginx' }),
    });
    const consoleAnswer = (await consoleAdd.json()) as { sum?: string; replayed?: boolean };
    assert.ok(consoleAdd.status === 200 || consoleAdd.status === 201, `POST /console/sums: ${consoleAdd.status} ${JSON.stringify(consoleAnswer)}`);
    assert.equal(consoleAnswer.sum, '42');
    assert.equal(consoleAnswer.replayed, false);
    expected += 42n;
    count += 1;
    const during = await watched;
    assert.ok(during.length >= 2, `at least 2 samples in 5 s through nginx, got ${during.length}`);
    // Every calculator's ack histogram is read and summed (calculator-2 may still be starting).
    const withAck = during.find((sample) => (sample.ack?.events ?? 0) > 0);
    assert.ok(withAck, `the Add's ack latency: ${JSON.stringify(during.map((sample) => sample.ack))}; ${during.at(-1)?.problems.join('; ')}`);
    assert.equal(typeof withAck.ack!.p99, 'number');
    assert.deepEqual(await waitForTotalCount(consoleBase, count, 60_000), { total: expected.toString(), count });
    const samples = await consoleSamples(consoleBase, 5_000);
    assert.ok(samples.length >= 2, `at least 2 samples in 5 s through nginx, got ${samples.length}`);
    const latest = samples.at(-1)!;
    assert.deepEqual({ total: latest.total, count: latest.count }, { total: expected.toString(), count }, latest.problems.join('; '));

    // The operator commands find nginx and each service's log file through the run state.
    const load = await summaCli(dataDir, 'load', '--concurrency', '6', '--duration', '2', '--ids-repeat', '10', '--json');
    assert.equal(load.code, 0, `${load.stdout}\n${load.stderr}`);
    const summary = JSON.parse(load.stdout) as { calculator: string; totals: string; check: { passed: boolean; message: string } };
    assert.equal(summary.calculator, `127.0.0.1:${nginx.grpcPort}`);
    assert.equal(summary.totals, `http://127.0.0.1:${nginx.totalsPort}`);
    assert.equal(summary.check.passed, true, summary.check.message);
    const logs = await summaCli(dataDir, 'logs', 'calculator-2', '-n', '1000');
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /"msg":"ready"/);

    assert.equal(await launcher.interrupt(), 0, launcher.output);
    await sleep(500);
    assert.deepEqual(processesOf(dataDir), [], 'nginx, the services, Kafka and PostgreSQL stopped with it');
    for (const port of topologyPorts(topology)) assert.equal(await listening(port), false, `port ${port} is closed`);
    assert.equal(await readRunState(dataDir), null, 'the run state is gone');
  });
});
