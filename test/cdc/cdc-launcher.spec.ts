// `npm start -- --relay debezium`: the single topology with Kafka Connect and Debezium's connector
// in place of the relay service, on the suite's PostgreSQL and Kafka (DATABASE_URL, KAFKA_BROKERS).
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { readRunState } from '../../src/cli/run-state.ts';
import { collectStatus } from '../../src/cli/status-command.ts';
import { waitForTotalCount } from '../../tools/load/add-load.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { Launcher, processesOf } from '../support/launcher-process.ts';
import { createTestDatabase, testKafkaBrokers, uniqueName, type TestDatabase } from '../support/test-environment.ts';

describe('npm start -- --relay debezium', { timeout: 600_000 }, () => {
  let dataDir: string;
  let database: TestDatabase;
  let env: Record<string, string>;
  let calculatorUrl: string;
  let totalsUrl: string;

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-cdc-launcher-'));
    await chmod(dataDir, 0o755);
    database = await createTestDatabase('cdc_launcher');
    const [grpc, calculatorHttp, relayHttp, totalsHttp] = (await Promise.all(Array.from({ length: 4 }, () => freePort()))).map(String);
    env = {
      SUMMA_DATA_DIR: dataDir,
      DATABASE_URL: database.url,
      KAFKA_BROKERS: testKafkaBrokers().join(','),
      KAFKA_TOPIC: uniqueName('cdc-launcher-sums'),
      TOTALS_GROUP_ID: uniqueName('cdc-launcher-totals'),
      CALCULATOR_GRPC_PORT: grpc!,
      CALCULATOR_HTTP_PORT: calculatorHttp!,
      RELAY_HTTP_PORT: relayHttp!,
      TOTALS_HTTP_PORT: totalsHttp!,
    };
    calculatorUrl = `http://127.0.0.1:${calculatorHttp}`;
    totalsUrl = `http://127.0.0.1:${totalsHttp}`;
  });

  after(async () => {
    for (const { pid } of processesOf(dataDir)) process.kill(pid, 'SIGKILL');
    // The launcher's slot outlives it by design (the next start resumes from it); here it goes.
    const sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const dropped = await sql
        .query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'summa_outbox'")
        .then(() => true, () => false);
      if (dropped) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await sql.end();
    await database?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('publishes through Kafka Connect instead of the relay, shows the connector RUNNING, and stops everything on Ctrl-C', async () => {
    const launcher = new Launcher(env, ['--relay', 'debezium']);
    await launcher.waitFor('Summa is running.', 420_000);
    assert.match(launcher.output, /Kafka Connect\s+http:\/\/127\.0\.0\.1:\d+\s+\(relay: Debezium connector summa-outbox RUNNING, task RUNNING; slot summa_outbox/);

    const state = await readRunState(dataDir);
    const roles = state!.components.map((component) => component.role);
    assert.ok(roles.includes('kafka-connect'));
    assert.ok(!roles.includes('relay'), 'no relay service runs under change data capture');
    // summa status asks Connect for the connector's and its task's state.
    const report = await collectStatus(state!, dataDir, env);
    const connect = report.components.find((component) => component.role === 'kafka-connect');
    assert.deepEqual([connect?.healthy, connect?.detail], [true, 'connector summa-outbox RUNNING, task 0 RUNNING']);
    // ... and the primary for the slot the connector streams from.
    assert.equal(report.captureSlot?.level, 'ok', report.captureSlot?.detail);
    assert.match(report.captureSlot!.detail, /^slot summa_outbox: active, retains /);
    assert.deepEqual(report.warnings, []);

    const add = async (requestId: string, num1: number, num2: number) => {
      const response = await fetch(`${calculatorUrl}/v1/sums`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': requestId },
        body: JSON.stringify({ num1, num2 }),
      });
      assert.ok(response.ok, await response.text());
    };
    await add('cdc-1', 5, 10);
    await add('cdc-2', 7, -3);
    await add('cdc-1', 5, 10);
    assert.deepEqual(await waitForTotalCount(totalsUrl, 2, 60_000), { total: '19', count: 2 });

    assert.equal(await launcher.interrupt(), 0);
    assert.deepEqual(processesOf(dataDir), [], 'Ctrl-C leaves no process of the run behind (Kafka Connect included)');
  });
});
