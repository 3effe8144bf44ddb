import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startCalculator, type RunningCalculator } from '../../src/calculator/calculator-service.ts';
import { readCalculatorConfig } from '../../src/calculator/config.ts';
import { writeRunState, type RunState } from '../../src/cli/run-state.ts';
import { collectStatus } from '../../src/cli/status-command.ts';
import { probeKafka } from '../../src/cli/status-kafka.ts';
import type { StatusReport } from '../../src/cli/status-report.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { readRelayConfig } from '../../src/relay/config.ts';
import { startRelay, type RunningRelay } from '../../src/relay/relay-service.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { sleep, waitForTotalCount } from '../../tools/load/add-load.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { serviceEnvironment, type ServiceEnvironment } from '../support/service-environment.ts';
import { createTestDatabase, testKafkaBrokers, testServerPids, type TestDatabase } from '../support/test-environment.ts';

const logger = createLogger('status-test', { LOG_LEVEL: 'silent' });
const SUMMA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/summa.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function summa(dataDir: string, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    // Timeouts far above the default: on a loaded test machine a healthy part may take more than 2 s to
    // answer. That status gives up in time is shown with servers that never answer (status-probes.spec.ts).
    const env = { ...process.env, SUMMA_DATA_DIR: dataDir, SUMMA_STATUS_TIMEOUT_MS: '10000' };
    execFile(process.execPath, [SUMMA, ...args], { env, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/**
 * `summa status` on a run of real services and the suite's Kafka and PostgreSQL. The totals service
 * is a process of its own, to be killed; the calculator and relay run in this process, cheaper to start.
 */
describe('summa status', () => {
  let database: TestDatabase;
  let where: ServiceEnvironment;
  let calculator: RunningCalculator;
  let relay: RunningRelay;
  let totals: ServiceProcess;
  let dataDir: string;
  let emptyDir: string;
  let state: RunState;
  let added = 0;

  const add = async (count: number) => {
    for (let i = 0; i < count; i += 1) {
      const response = await fetch(`${where.calculatorUrl}/v1/sums`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ num1: 1, num2: i, requestId: `status-${added}` }),
      });
      assert.equal(response.status, 201, await response.text());
      added += 1;
    }
  };
  /** Waits until Kafka's figures for the group reach `until` (the relay publishes and totals commits on their own time). */
  const waitForLag = async (until: (lag: StatusReport['consumerLag']) => boolean) => {
    const deadline = Date.now() + 20_000;
    let lag: StatusReport['consumerLag'] = [];
    while (Date.now() < deadline) {
      lag = (await probeKafka(state.kafkaBrokers, undefined, state.topic, state.consumerGroup)).consumerLag;
      if (until(lag)) return lag;
      await sleep(250);
    }
    assert.fail(`consumer lag never got there: ${JSON.stringify(lag)}`);
  };
  const ends = (lag: StatusReport['consumerLag']) => lag.reduce((sum, p) => sum + (p.end ?? 0), 0);

  before(async () => {
    database = await createTestDatabase('status');
    where = await serviceEnvironment({ name: 'status', databaseUrl: database.url, partitions: 2 });
    totals = new ServiceProcess('totals', where.env, `${where.totalsUrl}/readyz`);
    [calculator, relay] = await Promise.all([
      startCalculator(readCalculatorConfig(where.env), logger),
      startRelay(readRelayConfig(where.env), logger),
      totals.start(),
    ]).then(([c, r]) => [c, r] as const);
    [dataDir, emptyDir] = await Promise.all([mkdtemp(path.join(os.tmpdir(), 'summa-status-')), mkdtemp(path.join(os.tmpdir(), 'summa-status-none-'))]);
    const pids = testServerPids();
    const kafkaPort = Number(testKafkaBrokers()[0]!.split(':').at(-1));
    const portOf = (url: string) => Number(new URL(url).port);
    state = {
      topology: 'single',
      launcherPid: process.pid,
      startedAt: new Date().toISOString(),
      databaseUrl: database.url,
      kafkaBrokers: testKafkaBrokers().join(','),
      consumerGroup: where.env.TOTALS_GROUP_ID!,
      topic: where.env.KAFKA_TOPIC!,
      components: [
        {
          name: 'calculator',
          role: 'calculator',
          pid: process.pid,
          ports: [where.grpcPort, portOf(where.calculatorUrl)],
          healthUrl: `${where.calculatorUrl}/readyz`,
        },
        { name: 'relay', role: 'relay', pid: process.pid, ports: [portOf(where.relayUrl)], healthUrl: `${where.relayUrl}/readyz` },
        { name: 'totals', role: 'totals', pid: totals.pid, ports: [portOf(where.totalsUrl)], healthUrl: `${where.totalsUrl}/readyz` },
        { name: 'kafka', role: 'kafka-broker', pid: pids.kafka, ports: [kafkaPort], brokerId: 1 },
        { name: 'postgres-primary', role: 'postgres-primary', pid: pids.postgres, ports: [portOf(database.url)] },
      ],
    };
    await writeRunState(dataDir, state);
  });

  after(async () => {
    await Promise.all([totals?.stop(), calculator?.stop(), relay?.stop()]);
    await database?.drop();
    await Promise.all([dataDir, emptyDir].filter(Boolean).map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('says nothing is running, with exit code 3, when the data folder has no run state', async () => {
    const [run, json] = await Promise.all([summa(emptyDir, 'status'), summa(emptyDir, 'status', '--json')]);
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.equal(run.stderr.trim(), `summa: nothing is running from ${emptyDir}; start it with npm start`);
    assert.equal(json.code, 3);
    assert.deepEqual(JSON.parse(json.stdout), { running: false, dataDir: emptyDir, message: `nothing is running from ${emptyDir}; start it with npm start` });
  });

  it('reports every component healthy, the partitions the broker leads, and no consumer lag once totals caught up', async () => {
    await add(6);
    assert.equal((await waitForTotalCount(where.totalsUrl, 6, 20_000)).count, 6);
    await waitForLag((lag) => ends(lag) === 6 && lag.every((p) => p.lag === 0));

    const [run, text] = await Promise.all([summa(dataDir, 'status', '--json'), summa(dataDir, 'status')]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const report = JSON.parse(run.stdout) as StatusReport;
    assert.equal(report.healthy, true);
    assert.deepEqual(
      report.components.map(({ name, role, pid, ports, healthy }) => ({ name, role, pid, ports, healthy })),
      state.components.map(({ name, role, pid, ports }) => ({ name, role, pid, ports, healthy: true })),
    );
    const broker = report.components.find((c) => c.role === 'kafka-broker')!;
    assert.deepEqual([broker.brokerId, broker.leads, broker.outOfSync], [1, [0, 1], []]);
    assert.equal(report.components.find((c) => c.role === 'totals')!.detail, 'ready');
    assert.deepEqual(report.components.find((c) => c.role === 'postgres-primary')!.replicas, []);
    assert.deepEqual(report.consumerLag.map((p) => p.partition), [0, 1]);
    assert.equal(ends(report.consumerLag), 6);
    assert.ok(report.consumerLag.every((p) => p.lag === 0 && p.committed === p.end), JSON.stringify(report.consumerLag));

    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /all components healthy/);
    assert.match(text.stdout, /^ROLE +NAME +PID +PORTS +HEALTH +DETAIL$/m);
    assert.match(text.stdout, new RegExp(`^totals +totals +${totals.pid} +\\d+ +ok +ready$`, 'm'));
    assert.match(text.stdout, /kafka {2}id 1 {2}up {2}leads partitions 0,1/);
    assert.match(text.stdout, /Consumer lag \(group .*\): 0 records/);

    // Each kept table from its own service's /metrics, with the keeper's view of it.
    assert.deepEqual(
      report.retention.map(({ table, service, warnings }) => ({ table, service, warnings })),
      [
        { table: 'calculator.requests', service: 'calculator', warnings: [] },
        { table: 'totals.applied_events', service: 'totals', warnings: [] },
      ],
    );
    for (const table of report.retention) {
      assert.ok(table.reading && table.reading.partitions >= 1 && table.reading.partitionsAhead === 2, JSON.stringify(table));
    }
    assert.match(text.stdout, /\nRetention \(partitions by period\):\n {2}calculator\.requests \(calculator\): \d+ partition\(s\) kept, 2 ahead, 0 overdue; oldest row [^;]+; \d+ rows, [^;]+; 0 rows dropped\n {2}totals\.applied_events \(totals\): /);
  });

  it('shows a killed totals service as unhealthy, with exit code 1, and the records it has not applied as lag', async () => {
    await totals.kill();
    await add(4);
    await waitForLag((lag) => ends(lag) === 10);

    const run = await summa(dataDir, 'status', '--json');
    assert.equal(run.code, 1, run.stdout + run.stderr);
    const report = JSON.parse(run.stdout) as StatusReport;
    assert.equal(report.healthy, false);
    const down = report.components.find((c) => c.name === 'totals')!;
    assert.deepEqual([down.healthy, down.detail], [false, `process ${totals.pid} is not running`]);
    assert.ok(report.components.filter((c) => c.name !== 'totals').every((c) => c.healthy), run.stdout);
    assert.equal(report.consumerLag.reduce((sum, p) => sum + (p.lag ?? 0), 0), 4);
  });

  it('asks a replica whether it still follows a primary, and nginx whether each of its ports takes connections', async () => {
    const listener = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const open = (listener.address() as net.AddressInfo).port;
    const closed = await freePort();
    try {
      const report = await collectStatus(
        {
          ...state,
          // The suite's server is a primary: taken for a replica, it must be reported as not following one.
          replicaDatabaseUrl: database.url,
          components: [
            { name: 'postgres-replica', role: 'postgres-replica', pid: testServerPids().postgres, ports: [Number(new URL(database.url).port)] },
            { name: 'nginx', role: 'nginx', pid: process.pid, ports: [open] },
            { name: 'nginx-half', role: 'nginx', pid: process.pid, ports: [open, closed] },
          ],
        },
        dataDir,
        { SUMMA_STATUS_TIMEOUT_MS: '10000' },
      );
      const [replica, nginx, half] = report.components;
      assert.deepEqual([replica!.healthy, replica!.inRecovery, replica!.lagBytes], [false, false, null]);
      assert.match(replica!.detail, /not in recovery/);
      assert.deepEqual([nginx!.healthy, nginx!.detail], [true, 'accepting connections']);
      assert.deepEqual([half!.healthy, half!.detail], [false, `port ${closed} does not accept connections`]);
    } finally {
      listener.close();
    }
  });
});
