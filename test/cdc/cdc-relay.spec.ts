// Change data capture as the relay: Kafka Connect (distributed) with Debezium's PostgreSQL connector
// and its outbox event router take the outbox's inserts off the write-ahead log. Checks that its
// records are the poller relay's, byte for byte, and that the totals service counts them exactly.
import assert from 'node:assert/strict';
import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { encodeSumAccepted } from '../../src/events/sum-accepted.ts';
import { ensureOutboxPublication } from '../../src/outbox/outbox-capture.ts';
import { createBatchConsumer } from '../../src/platform/kafka/batch-consumer.ts';
import type { IncomingRecord } from '../../src/platform/kafka/records.ts';
import { startKafkaConnect, outboxConnectorConfig, type KafkaConnect } from '../../tools/local-stack/kafka-connect.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { createTestDatabase, testKafkaBrokers, uniqueName, type TestDatabase } from '../support/test-environment.ts';

// The workload: 2,000 Adds, a fifth of them under an id already sent (with the same numbers).
const WORKLOAD = { unique: 1_600, repeats: 400 };
// Killing the worker halfway needs fewer.
const KILL_WORKLOAD = { unique: 300, repeats: 100 };
const CONNECTOR = 'summa-outbox';

describe('change data capture (Kafka Connect + Debezium) as the relay', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let connect: KafkaConnect | undefined;
  let connectDir: string;
  let calculator: ServiceProcess;
  let totals: ServiceProcess;
  let env: Record<string, string>;
  let relayUrl: string;
  let calculatorUrl: string;
  let totalsUrl: string;
  const slotName = uniqueName('summa_outbox').toLowerCase();
  const groupId = uniqueName('summa-connect');

  before(async () => {
    database = await createTestDatabase('cdc');
    sql = new pg.Pool({ connectionString: database.url, max: 4 });
    ({ env, relayUrl, calculatorUrl, totalsUrl } = await serviceEnvironment({ name: 'cdc', databaseUrl: database.url, partitions: 3 }));
    calculator = new ServiceProcess('calculator', { ...env, RELAY_MODE: 'debezium', CAPTURE_SLOT_NAME: slotName }, `${calculatorUrl}/readyz`);
    totals = new ServiceProcess('totals', env, `${totalsUrl}/readyz`);
    // The calculator migrates its schema (the outbox) before the publication can name the table.
    await calculator.start();
    await totals.start();
    await ensureOutboxPublication(sql);

    connectDir = await mkdtemp(path.join(os.tmpdir(), 'summa-connect-'));
    connect = await startKafkaConnect({ dataDir: connectDir, brokers: testKafkaBrokers().join(','), groupId });
    const url = new URL(database.url);
    await connect.putConnector(
      CONNECTOR,
      outboxConnectorConfig({
        database: {
          host: url.hostname,
          port: Number(url.port),
          user: decodeURIComponent(url.username),
          password: decodeURIComponent(url.password),
          name: url.pathname.slice(1),
        },
        slotName,
        topicPrefix: uniqueName('summa-cdc'),
      }),
    );
    const state = await connect.waitUntilRunning(CONNECTOR);
    assert.equal(state.connector, 'RUNNING');
  });

  after(async () => {
    await Promise.all([calculator?.stop(), totals?.stop()]);
    await connect?.stop();
    // The slot pins WAL and keeps its database from being dropped; its walsender ends with the worker.
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const dropped = await sql
        ?.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slotName])
        .then(() => true, () => false);
      if (dropped !== false) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await sql?.end();
    await database?.drop();
    if (connectDir) await rm(connectDir, { recursive: true, force: true });
  });

  const readTotal = async () => (await (await fetch(`${totalsUrl}/total`)).json()) as { total: string; count: number };

  async function waitForCount(count: number, timeoutMs = 90_000) {
    const deadline = Date.now() + timeoutMs;
    let last = await readTotal();
    while (last.count < count && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      last = await readTotal();
    }
    return last;
  }

  /** Everything on the topic until `count` records per event id of `eventIds` arrived (or the time is up). */
  async function collect(eventIds: readonly string[], perEvent: number, timeoutMs = 60_000): Promise<IncomingRecord[]> {
    const records: IncomingRecord[] = [];
    const wanted = new Set(eventIds);
    let done!: () => void;
    const enough = new Promise<void>((resolve) => (done = resolve));
    const consumer = createBatchConsumer({ brokers: testKafkaBrokers(), clientId: 'cdc-test', groupId: uniqueName('cdc-test'), topic: env.KAFKA_TOPIC! }, async (batch) => {
      records.push(...batch.filter((record) => wanted.has(record.headers['summa-event-id']!)));
      if (records.length >= eventIds.length * perEvent) done();
    });
    await consumer.start();
    const timer = setTimeout(done, timeoutMs);
    await enough;
    clearTimeout(timer);
    await consumer.close();
    return records;
  }

  it("writes the poller relay's records: same topic, key, value bytes and headers", async () => {
    // Outbox rows as the calculator writes them, left in the table (as in poller mode) so that the
    // poller relay then publishes the same rows: each event arrives twice, once from each.
    const events = Array.from({ length: 5 }, (_, index) => {
      const eventId = randomUUID();
      const num1 = BigInt(index) * 1_000_000_007n - 9_007_199_254_740_993n;
      const num2 = 7n;
      // Every other event as of a traced request: its row stores the request's traceparent.
      const traceparent = index % 2 === 0 ? `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01` : undefined;
      return { eventId, requestId: `shape-${index}-ünïcode`, num1, num2, sum: num1 + num2, acceptedAt: new Date(), traceparent };
    });
    for (const event of events) {
      await sql.query('INSERT INTO calculator.outbox (event_id, topic, message_key, payload, headers) VALUES ($1, $2, $3, $4, $5)', [
        event.eventId,
        env.KAFKA_TOPIC,
        event.requestId,
        encodeSumAccepted(event),
        JSON.stringify(event.traceparent ? { traceparent: event.traceparent } : {}),
      ]);
    }
    const eventIds = events.map((event) => event.eventId);
    const captured = await collect(eventIds, 1);
    assert.equal(captured.length, events.length, 'each inserted row is captured once');

    const relay = new ServiceProcess('relay', env, `${relayUrl}/readyz`);
    await relay.start();
    try {
      const both = await collect(eventIds, 2);
      assert.equal(both.length, 2 * events.length, 'the poller published the same rows once more');
      for (const event of events) {
        const [first, second] = both.filter((record) => record.headers['summa-event-id'] === event.eventId);
        assert.ok(first && second);
        assert.equal(first.topic, second.topic);
        assert.equal(first.key, second.key);
        assert.equal(first.key, event.requestId);
        assert.ok(first.value.equals(second.value), `value bytes differ: ${first.value.toString()} / ${second.value.toString()}`);
        assert.equal(first.value.toString(), encodeSumAccepted(event));
        assert.deepEqual(sortedHeaders(first), sortedHeaders(second));
        assert.deepEqual(sortedHeaders(first), [
          ['content-type', 'application/json'],
          ['summa-event-id', event.eventId],
          ...(event.traceparent ? [['traceparent', event.traceparent] as [string, string]] : []),
        ]);
        // The key picks the partition alike (murmur2 of the same bytes).
        assert.equal(first.partition, second.partition);
      }
    } finally {
      await relay.stop();
    }
    // Each event counted once, the duplicate absorbed by event id.
    const total = await waitForCount(events.length);
    assert.equal(total.count, events.length);
    assert.equal(BigInt(total.total), events.reduce((sum, event) => sum + event.sum, 0n));
  });

  function workload({ unique, repeats }: { unique: number; repeats: number }) {
    const requests = Array.from({ length: unique }, () => ({
      requestId: randomUUID(),
      num1: BigInt(randomInt(-1_000_000_000, 1_000_000_000)),
      num2: BigInt(randomInt(-1_000_000_000, 1_000_000_000)),
    }));
    const sends = [...requests, ...Array.from({ length: repeats }, () => requests[randomInt(requests.length)]!)];
    return { requests, sends };
  }

  /** Sends a few at a time, so that repeats also meet their first send in the same batch. */
  async function send(sends: { requestId: string; num1: bigint; num2: bigint }[]) {
    for (let start = 0; start < sends.length; start += 20) {
      await Promise.all(
        sends.slice(start, start + 20).map(async ({ requestId, num1, num2 }) => {
          const response = await fetch(`${calculatorUrl}/v1/sums`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': requestId },
            body: JSON.stringify({ num1: num1.toString(), num2: num2.toString() }),
          });
          assert.ok(response.status === 200 || response.status === 201, `Add answered ${response.status}: ${await response.text()}`);
        }),
      );
    }
  }

  it('counts 2,000 Adds with repeated ids exactly, and the outbox stays empty', async () => {
    const before = await readTotal();
    const { requests, sends } = workload(WORKLOAD);
    const UNIQUE_REQUESTS = WORKLOAD.unique;
    await send(sends);
    const expected = requests.reduce((sum, { num1, num2 }) => sum + num1 + num2, BigInt(before.total));
    const total = await waitForCount(before.count + UNIQUE_REQUESTS);
    assert.equal(total.count, before.count + UNIQUE_REQUESTS);
    assert.equal(BigInt(total.total), expected);

    const { rows } = await sql.query<{ count: string }>('SELECT count(*) FROM calculator.outbox');
    assert.equal(Number(rows[0]!.count), 0, 'RELAY_MODE=debezium deletes each outbox row in the transaction that wrote it');
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // a duplicate would show up here
    assert.equal((await readTotal()).count, before.count + UNIQUE_REQUESTS);
    const state = await connect!.connectorState(CONNECTOR);
    assert.deepEqual([state.connector, ...state.tasks.map((task) => task.state)], ['RUNNING', 'RUNNING']);
  });

  it('loses and doubles nothing when Kafka Connect is killed mid-run and started again', async () => {
    const before = await readTotal();
    const { requests, sends } = workload(KILL_WORKLOAD);
    const UNIQUE_REQUESTS = KILL_WORKLOAD.unique;
    const half = Math.floor(sends.length / 2);
    await send(sends.slice(0, half));
    // No stop: offsets not yet flushed are lost, and the new worker replays from the slot's last
    // confirmed LSN; the totals service absorbs the replayed events by event id.
    await connect!.kill();
    const sending = send(sends.slice(half)); // recorded while nothing captures: they wait in the WAL
    // The calculator's gauge sees the slot go idle (it samples every 5 s).
    await waitForSlotActive(calculatorUrl, 0);
    connect = await startKafkaConnect({ dataDir: connectDir, brokers: testKafkaBrokers().join(','), groupId });
    await connect.waitUntilRunning(CONNECTOR);
    await sending;
    const expected = requests.reduce((sum, { num1, num2 }) => sum + num1 + num2, BigInt(before.total));
    const total = await waitForCount(before.count + UNIQUE_REQUESTS);
    assert.equal(total.count, before.count + UNIQUE_REQUESTS);
    assert.equal(BigInt(total.total), expected);
    await waitForSlotActive(calculatorUrl, 1);
  });
});

/** Waits until the calculator's summa_outbox_capture_slot_active gauge reads `value`. */
async function waitForSlotActive(calculatorUrl: string, value: 0 | 1): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    const text = await (await fetch(`${calculatorUrl}/metrics`)).text();
    last = /^summa_outbox_capture_slot_active(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? 'missing';
    if (last === String(value)) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.fail(`summa_outbox_capture_slot_active is ${last}, not ${value}, after 30 s`);
}

function sortedHeaders(record: IncomingRecord): [string, string][] {
  return Object.entries(record.headers).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
