import assert from 'node:assert/strict';
import { randomInt, randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { startKafkaBroker, type KafkaBroker } from '../../tools/local-stack/kafka-broker.ts';
import { startPostgresServer, type PostgresServer } from '../../tools/local-stack/postgres-server.ts';
import { waitForPortFree } from '../chaos/processes.ts';
import { sleep, waitForTotalCount } from '../../tools/load/add-load.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { CalculatorClient } from '../../tools/lib/grpc-clients.ts';
import { ServiceProcess } from '../support/service-process.ts';

// Each outage takes down a server the whole system depends on, so this file runs its own
// PostgreSQL and Kafka instead of the suite's shared ones.

/** How a burst of calls made during an outage ended. */
interface Outcome {
  ok: number;
  refused: number;
  other: string[];
  slowestMs: number;
}

describe('dependency outages, with the services as real processes on their own PostgreSQL and Kafka', () => {
  let workDir: string;
  let postgres: PostgresServer | undefined;
  let postgresPort: number;
  let kafka: KafkaBroker | undefined;
  let sql: pg.Pool;
  let calculator: ServiceProcess;
  let relay: ServiceProcess;
  let totals: ServiceProcess;
  let client: CalculatorClient;
  let calculatorUrl: string;
  let relayUrl: string;
  let totalsUrl: string;
  /** What every acknowledged request added. */
  const acknowledged = new Map<string, bigint>();

  before(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-outage-'));
    await chmod(workDir, 0o755); // PostgreSQL runs as 'postgres' and must reach its directory
    postgresPort = await freePort();
    postgres = await startPostgresServer({ dataDir: path.join(workDir, 'postgres'), port: postgresPort });
    await postgres.ensureDatabase('summa');
    kafka = await startKafkaBroker({ dataDir: path.join(workDir, 'kafka'), port: 0 });
    sql = new pg.Pool({ connectionString: postgres.url('summa'), max: 2 });
    sql.on('error', () => {}); // its idle connections die with the server

    const where = await serviceEnvironment({ name: 'outage', databaseUrl: postgres.url('summa'), kafkaBrokers: kafka.brokers });
    ({ calculatorUrl, relayUrl, totalsUrl } = where);
    const env = where.env;
    calculator = new ServiceProcess('calculator', env, `${calculatorUrl}/readyz`);
    relay = new ServiceProcess('relay', env, `${relayUrl}/readyz`);
    totals = new ServiceProcess('totals', env, `${totalsUrl}/readyz`);
    await calculator.start();
    await Promise.all([relay.start(), totals.start()]);
    client = new CalculatorClient(where.grpcAddress);
  });

  after(async () => {
    client?.close();
    await Promise.allSettled([calculator?.stop(), relay?.stop(), totals?.stop()]);
    await sql?.end().catch(() => {});
    await kafka?.stop().catch(() => {});
    await postgres?.stop().catch(() => {});
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** One Add over gRPC; remembered when acknowledged. */
  async function add(deadlineMs = 10_000): Promise<'ok' | grpc.ServiceError> {
    const num1 = BigInt(randomInt(-1_000_000_000, 1_000_000_000));
    const num2 = BigInt(randomInt(-1_000_000_000, 1_000_000_000));
    const requestId = randomUUID();
    try {
      const response = await client.add({ num1, num2, requestId }, deadlineMs);
      assert.equal(BigInt(response.sum), num1 + num2);
      acknowledged.set(requestId, num1 + num2);
      return 'ok';
    } catch (error) {
      return error as grpc.ServiceError;
    }
  }

  /** `count` concurrent Adds, over gRPC and HTTP, and how each ended. */
  async function burst(count: number): Promise<Outcome> {
    const outcome: Outcome = { ok: 0, refused: 0, other: [], slowestMs: 0 };
    await Promise.all(
      Array.from({ length: count }, async (_, index) => {
        const startedAt = performance.now();
        if (index % 4 === 3) {
          const response = await fetch(`${calculatorUrl}/v1/sums`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': randomUUID() },
            body: JSON.stringify({ num1: 1, num2: 2 }),
            signal: AbortSignal.timeout(15_000),
          }).catch((error: unknown) => error as Error);
          if (response instanceof Error) outcome.other.push(`HTTP: ${response.message}`);
          else if (response.status === 503) outcome.refused += 1;
          else if (response.status === 201) outcome.ok += 1;
          else outcome.other.push(`HTTP ${response.status}: ${await response.text()}`);
        } else {
          const result = await add(15_000);
          if (result === 'ok') outcome.ok += 1;
          else if (result.code === grpc.status.UNAVAILABLE || result.code === grpc.status.RESOURCE_EXHAUSTED) outcome.refused += 1;
          else outcome.other.push(`gRPC ${grpc.status[result.code]}: ${result.details}`);
        }
        outcome.slowestMs = Math.max(outcome.slowestMs, performance.now() - startedAt);
      }),
    );
    return outcome;
  }

  async function metric(url: string, name: string): Promise<number> {
    const text = await (await fetch(`${url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
    assert.ok(line, `${name} is not in ${url}/metrics`);
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }

  /** The totals service has applied every acknowledged request, once each, and nothing else. */
  async function assertEverythingAppliedOnce(): Promise<void> {
    const expected = [...acknowledged.values()].reduce((sum, value) => sum + value, 0n);
    const settled = await waitForTotalCount(totalsUrl, acknowledged.size, 60_000);
    assert.equal(settled.count, acknowledged.size, 'every acknowledged request was applied');
    assert.equal(settled.total, expected.toString(), 'the total is the exact sum of the acknowledged requests');
    const applied = await sql.query<{ request_id: string; times: string }>(
      'SELECT request_id, count(*)::text AS times FROM totals.applied_events GROUP BY request_id',
    );
    assert.equal(applied.rows.length, acknowledged.size);
    assert.ok(applied.rows.every((row) => row.times === '1' && acknowledged.has(row.request_id)));
  }

  async function addUntilAccepted(timeoutMs: number): Promise<number> {
    const startedAt = Date.now();
    while (Date.now() - startedAt < timeoutMs) {
      if ((await add(3_000)) === 'ok') return Date.now() - startedAt;
      await sleep(250);
    }
    assert.fail(`no Add was accepted within ${timeoutMs} ms of the dependency coming back`);
  }

  it('PostgreSQL down: the calculator refuses at once with UNAVAILABLE and holds nothing; all recover by themselves', async () => {
    for (let i = 0; i < 30; i++) assert.equal(await add(), 'ok');
    await assertEverythingAppliedOnce();
    const rssBefore = await metric(calculatorUrl, 'process_resident_memory_bytes');

    // A stopping server first tells every session why (FATAL: terminating connection due to
    // administrator command), then drops it: two errors on each connection, which must not crash anyone.
    await postgres!.stop();
    postgres = undefined;

    // Twice the default pool of writers, many times over: each call is answered quickly and
    // refused, none hangs or is queued without bound.
    const during = await burst(1_500);
    assert.deepEqual(during.other, [], 'every call was refused with UNAVAILABLE / HTTP 503');
    assert.equal(during.ok, 0);
    assert.equal(during.refused, 1_500);
    assert.ok(during.slowestMs < 5_000, `the slowest refusal took ${Math.round(during.slowestMs)} ms`);
    const rssAfter = await metric(calculatorUrl, 'process_resident_memory_bytes');
    assert.ok(rssAfter - rssBefore < 100 * 1024 * 1024, `RSS grew from ${rssBefore} to ${rssAfter} bytes during the outage`);

    // Meanwhile nothing died: the relay and the consumer back off.
    await sleep(3_000);
    for (const service of [calculator, relay, totals]) assert.ok(service.running, `${service.name} exited during the outage:\n${service.logs}`);
    for (const url of [calculatorUrl, relayUrl, totalsUrl]) assert.equal((await fetch(`${url}/healthz`)).status, 200);
    // Metrics stay scrapeable; the figures read from the database are left out until it is back.
    for (const [url, fromDatabase] of [[relayUrl, 'summa_outbox_pending_events'], [totalsUrl, 'summa_total_value']] as const) {
      const scrape = await fetch(`${url}/metrics`);
      const text = await scrape.text();
      assert.equal(scrape.status, 200, text);
      assert.match(text, /^process_resident_memory_bytes/m);
      assert.doesNotMatch(text, new RegExp(`^${fromDatabase}\\{`, 'm'));
    }

    await waitForPortFree(postgresPort);
    postgres = await startPostgresServer({ dataDir: path.join(workDir, 'postgres'), port: postgresPort });
    const recoveredInMs = await addUntilAccepted(30_000);
    for (let i = 0; i < 50; i++) assert.equal(await add(), 'ok');
    await assertEverythingAppliedOnce();
    assert.ok(recoveredInMs < 30_000);
  });

  it('Kafka down: Adds are still accepted into the outbox; the relay backs off and delivers everything once Kafka returns', async () => {
    const errorsBefore = await metric(relayUrl, 'summa_relay_publish_errors_total');
    const broker = kafka!;
    kafka = undefined;
    await broker.kill();

    // The calculator does not need Kafka: its answer only waits for PostgreSQL.
    for (let i = 0; i < 100; i++) assert.equal(await add(), 'ok');
    await sleep(3_000);
    const pending = await sql.query<{ n: string }>('SELECT count(*)::text AS n FROM calculator.outbox');
    assert.ok(Number(pending.rows[0]!.n) > 0, 'events wait in the outbox while Kafka is down');
    assert.ok((await metric(relayUrl, 'summa_outbox_pending_events')) > 0);
    assert.ok((await metric(relayUrl, 'summa_relay_publish_errors_total')) > errorsBefore, 'the relay counted its failed attempts');
    for (const service of [calculator, relay, totals]) assert.ok(service.running, `${service.name} exited during the outage:\n${service.logs}`);

    await waitForPortFree(broker.port);
    kafka = await startKafkaBroker({ dataDir: path.join(workDir, 'kafka'), port: broker.port, controllerPort: broker.controllerPort });
    for (let i = 0; i < 20; i++) assert.equal(await add(), 'ok');
    await assertEverythingAppliedOnce();
    const drained = await sql.query<{ n: string }>('SELECT count(*)::text AS n FROM calculator.outbox');
    assert.equal(drained.rows[0]!.n, '0');
  });
});
