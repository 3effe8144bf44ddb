import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import pg from 'pg';
import { startCalculator } from '../../src/calculator/calculator-service.ts';
import { readCalculatorConfig } from '../../src/calculator/config.ts';
import { CALCULATOR_MIGRATIONS, OUTBOX_CHANNEL } from '../../src/calculator/schema.ts';
import { decodeSumAccepted, encodeSumAccepted } from '../../src/events/sum-accepted.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { createPool, type Pool } from '../../src/platform/db/pool.ts';
import { createBatchConsumer, type BatchConsumer } from '../../src/platform/kafka/batch-consumer.ts';
import { createEventPublisher, type EventPublisher } from '../../src/platform/kafka/publisher.ts';
import type { IncomingRecord } from '../../src/platform/kafka/records.ts';
import { ensureTopic } from '../../src/platform/kafka/topics.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { createMetricsRegistry } from '../../src/platform/metrics.ts';
import { createRelayMetrics } from '../../src/relay/metrics.ts';
import { OutboxRelay, type OutboxRelayOptions } from '../../src/outbox/outbox-relay.ts';
import { createTestDatabase, testKafkaBrokers, uniqueName, type TestDatabase } from '../support/test-environment.ts';

const logger = createLogger('relay-test', { LOG_LEVEL: 'silent' });

describe('outbox relay against real PostgreSQL and Kafka', () => {
  let database: TestDatabase;
  let pool: Pool;
  let publisher: EventPublisher;
  const kafka = { brokers: testKafkaBrokers(), clientId: 'relay-test' };
  const cleanups: Array<() => Promise<void>> = [];

  before(async () => {
    database = await createTestDatabase('relay');
    pool = createPool(database.url, { max: 10, applicationName: 'relay-test' });
    await migrate(pool, 'calculator', CALCULATOR_MIGRATIONS);
    publisher = createEventPublisher(kafka);
  });

  // Each test's relays stop with it, so they cannot take the next test's events.
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  after(async () => {
    await publisher?.close();
    await pool?.end();
    await database?.drop();
  });

  async function freshTopic(): Promise<string> {
    const topic = uniqueName('relay');
    await ensureTopic(kafka, topic, { partitions: 3 });
    // Earlier tests leave rows for their own topics only after they finish; start clean.
    await pool.query('DELETE FROM calculator.outbox');
    return topic;
  }

  function startRelay(
    options: Partial<OutboxRelayOptions> = {},
    through: Pick<EventPublisher, 'publish'> = publisher,
    registry = createMetricsRegistry('relay'),
  ): OutboxRelay {
    const relay = new OutboxRelay(
      pool,
      database.url,
      through,
      { batchSize: 50, workers: 2, pollIntervalMs: 200, lingerMs: 5, leaseMs: 30_000, maxAttempts: 10, ...options },
      logger,
      createRelayMetrics(registry, pool, 604_800),
    );
    relay.start();
    cleanups.push(() => relay.stop());
    return relay;
  }

  /** Collects what arrives on the topic until `count` event ids are seen (or times out). */
  async function collect(topic: string, count: number, timeoutMs = 30_000): Promise<IncomingRecord[]> {
    const records: IncomingRecord[] = [];
    let done!: () => void;
    const enough = new Promise<void>((resolve) => (done = resolve));
    const consumer: BatchConsumer = createBatchConsumer({ ...kafka, groupId: uniqueName('relay-test'), topic }, async (batch) => {
      records.push(...batch);
      if (new Set(records.map((r) => r.headers['summa-event-id'])).size >= count) done();
    });
    await consumer.start();
    const timer = setTimeout(done, timeoutMs);
    await enough;
    clearTimeout(timer);
    await new Promise((resolve) => setTimeout(resolve, 500)); // anything extra would show up here
    await consumer.close();
    return records;
  }

  async function insertEvents(topic: string, count: number, client: pg.ClientBase | Pool = pool): Promise<string[]> {
    const eventIds = Array.from({ length: count }, () => randomUUID());
    for (const eventId of eventIds) {
      const payload = encodeSumAccepted({ eventId, requestId: eventId, num1: 1n, num2: 2n, sum: 3n, acceptedAt: new Date() });
      await client.query('INSERT INTO calculator.outbox (event_id, topic, message_key, payload) VALUES ($1, $2, $3, $4)', [
        eventId,
        topic,
        eventId,
        payload,
      ]);
    }
    return eventIds;
  }

  const pending = async () => Number((await pool.query('SELECT count(*) FROM calculator.outbox')).rows[0].count);

  /** The relay deletes a batch just after Kafka acknowledged it, so a consumer may see it first. */
  async function waitUntilOutboxEmpty(timeoutMs = 10_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let left = await pending();
    while (left > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      left = await pending();
    }
    return left;
  }

  it('publishes every event once with three relays side by side, then empties the outbox', async () => {
    const topic = await freshTopic();
    const eventIds = await insertEvents(topic, 600);
    startRelay();
    startRelay();
    startRelay();
    const records = await collect(topic, eventIds.length);
    const published = records.map((r) => r.headers['summa-event-id']);
    assert.equal(published.length, eventIds.length, 'no event is published twice without a failure');
    assert.deepEqual(new Set(published), new Set(eventIds));
    assert.equal(records[0]!.headers['content-type'], 'application/json');
    assert.equal(await waitUntilOutboxEmpty(), 0);
  });

  it('vacuums the outbox once it has deleted enough published rows, and not without the option', async () => {
    const topic = await freshTopic();
    const vacuums = async () => Number((await pool.query(`SELECT pg_stat_get_vacuum_count('calculator.outbox'::regclass) AS n`)).rows[0].n);
    // Only the relay's vacuums count here.
    await pool.query('ALTER TABLE calculator.outbox SET (autovacuum_enabled = false)');
    cleanups.push(async () => void (await pool.query('ALTER TABLE calculator.outbox RESET (autovacuum_enabled)')));
    const before = await vacuums();
    const first = await insertEvents(topic, 120);
    const withoutVacuum = startRelay();
    assert.equal((await collect(topic, first.length)).length, first.length);
    assert.equal(await waitUntilOutboxEmpty(), 0);
    await withoutVacuum.stop();
    assert.equal(await vacuums(), before, 'a relay without the option leaves the table to autovacuum');

    const second = await insertEvents(topic, 120);
    const vacuuming = startRelay({ vacuum: { everyRows: 100, minIntervalMs: 0 } });
    assert.equal(await waitUntilOutboxEmpty(), 0);
    await vacuuming.stop(); // waits for a vacuum in progress
    const deadline = Date.now() + 5_000;
    while ((await vacuums()) === before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok((await vacuums()) > before, `the relay vacuumed the outbox after deleting ${second.length} rows`);
  });

  it('wakes on a notification rather than waiting for the next poll', async () => {
    const topic = await freshTopic();
    startRelay({ pollIntervalMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 500)); // let it go idle
    const [eventId] = await insertEvents(topic, 1);
    await pool.query(`SELECT pg_notify($1, '')`, [OUTBOX_CHANNEL]);
    const records = await collect(topic, 1, 10_000);
    assert.deepEqual(
      records.map((r) => r.headers['summa-event-id']),
      [eventId],
      'published long before the 60 s poll would have found it',
    );
  });

  it("publishes a calculator's Add promptly: the calculator wakes the relays after its commit", async () => {
    const topic = await freshTopic();
    startRelay({ pollIntervalMs: 60_000 });
    const calculator = await startCalculator(
      readCalculatorConfig({ DATABASE_URL: database.url, CALCULATOR_GRPC_PORT: '0', CALCULATOR_HTTP_PORT: '0', KAFKA_TOPIC: topic }),
      logger,
    );
    cleanups.push(() => calculator.stop());
    await new Promise((resolve) => setTimeout(resolve, 500)); // let the relay go idle
    const collected = collect(topic, 1, 10_000);
    const answer = await fetch(`http://127.0.0.1:${calculator.httpPort}/v1/sums`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ num1: 20, num2: 22, requestId: `woken-${topic}` }),
    });
    assert.equal(answer.status, 201);
    const records = await collected;
    assert.deepEqual(
      records.map((r) => decodeSumAccepted(r.value.toString()).requestId),
      [`woken-${topic}`],
      'published long before the 60 s poll would have found it',
    );
  });

  it('never skips an event whose transaction commits after later ones were relayed', async () => {
    const topic = await freshTopic();
    startRelay();
    const slow = await pool.connect();
    await slow.query('BEGIN');
    const [late] = await insertEvents(topic, 1, slow); // takes the lower id, stays uncommitted
    const early = await insertEvents(topic, 5);
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // the later ones go out meanwhile
    assert.equal(await pending(), 0, 'the committed events went out past the uncommitted one');
    await slow.query('COMMIT');
    slow.release();
    const records = await collect(topic, 6);
    assert.deepEqual(new Set(records.map((r) => r.headers['summa-event-id'])), new Set([late, ...early]));
  });

  it('keeps events in the outbox while Kafka refuses them, and publishes them once it accepts', async () => {
    const topic = await freshTopic();
    let refuse = true;
    const flaky = {
      publish: (t: string, records: Parameters<EventPublisher['publish']>[1]) =>
        refuse ? Promise.reject(new Error('broker unavailable')) : publisher.publish(t, records),
    };
    startRelay({ workers: 1, pollIntervalMs: 100, lingerMs: 0 }, flaky);
    const eventIds = await insertEvents(topic, 20);
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.equal(await pending(), 20, 'nothing leaves the outbox unacknowledged');
    refuse = false;
    const records = await collect(topic, 20);
    assert.deepEqual(new Set(records.map((r) => r.headers['summa-event-id'])), new Set(eventIds));
    assert.equal(await waitUntilOutboxEmpty(), 0);
  });

  const waitFor = async (what: string, condition: () => Promise<boolean>, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await condition())) {
      if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  it('holds no row lock while its publish hangs, and another relay publishes its rows once the lease ran out', async () => {
    const topic = await freshTopic();
    let unblock!: () => void;
    const blocked = new Promise<void>((resolve) => (unblock = resolve));
    let publishing = 0;
    const hanging = { publish: async (_topic: string, records: unknown[]) => ((publishing += records.length), blocked) };
    const eventIds = await insertEvents(topic, 5); // all there before the relay claims its one batch
    startRelay({ workers: 1, leaseMs: 2_000 }, hanging);
    cleanups.push(async () => unblock()); // runs before that relay's stop, which waits for its batch
    await waitFor('the hanging relay to be publishing every row', async () => publishing === 5);

    // Mid-publish: another session can lock every row at once, so the relay holds none of them
    // (nor keeps a transaction open that would pin vacuum).
    const other = await pool.connect();
    try {
      await other.query('BEGIN');
      const { rows } = await other.query('SELECT id FROM calculator.outbox FOR UPDATE NOWAIT');
      assert.equal(rows.length, 5);
      await other.query('ROLLBACK');
    } finally {
      other.release();
    }
    const { rows: idle } = await pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`,
    );
    assert.equal(idle[0].n, 0, 'no session sits in an open transaction');

    // A second relay takes the rows over only after the first one's lease ran out.
    startRelay({ leaseMs: 2_000 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await pending(), 5, 'not while the lease holds');
    const records = await collect(topic, 5);
    assert.deepEqual(new Set(records.map((r) => r.headers['summa-event-id'])), new Set(eventIds));
    assert.equal(await waitUntilOutboxEmpty(), 0);
  });

  it('parks an event whose topic does not exist after its attempts, and relays the events behind it meanwhile', async () => {
    const topic = await freshTopic();
    const missing = uniqueName('relay-missing'); // never created, and the broker creates no topic on its own
    const [poison] = await insertEvents(missing, 1);
    const eventIds = await insertEvents(topic, 20);
    const registry = createMetricsRegistry('relay');
    startRelay({ maxAttempts: 2 }, publisher, registry);
    const records = await collect(topic, eventIds.length);
    assert.deepEqual(new Set(records.map((r) => r.headers['summa-event-id'])), new Set(eventIds), 'the events behind it went out');

    await waitFor('the event to be parked', async () => {
      const { rows } = await pool.query('SELECT parked_at FROM calculator.outbox WHERE event_id = $1', [poison]);
      return rows[0]?.parked_at != null;
    }, 30_000);
    const { rows } = await pool.query('SELECT topic, attempts, last_error, claimed_by FROM calculator.outbox');
    assert.equal(rows.length, 1, 'only the parked event is left');
    assert.equal(rows[0].topic, missing);
    assert.equal(rows[0].attempts, 2);
    assert.match(rows[0].last_error, new RegExp(`Unknown topic ${missing}`));
    assert.match(await registry.metrics(), /summa_outbox_parked_events\{service="relay"\} 1\n/);
    assert.match(await registry.metrics(), /summa_outbox_pending_events\{service="relay"\} 0\n/, 'a parked event is not pending');

    // Parked stays parked: no relay takes it again until it is released.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal((await pool.query('SELECT attempts FROM calculator.outbox')).rows[0].attempts, 2);
  });

  it('loses nothing when leases run out in the middle of slow publishes: the events go out again, never skipped', async () => {
    const topic = await freshTopic();
    const eventIds = await insertEvents(topic, 300);
    // Every other publish takes longer than the lease, so other relays claim those rows meanwhile.
    let calls = 0;
    const slow = {
      publish: async (t: string, records: Parameters<EventPublisher['publish']>[1]) => {
        if (calls++ % 2 === 0) await new Promise((resolve) => setTimeout(resolve, 1_500));
        await publisher.publish(t, records);
      },
    };
    for (let i = 0; i < 3; i++) startRelay({ batchSize: 20, leaseMs: 1_000 }, slow);
    const records = await collect(topic, eventIds.length, 60_000);
    assert.deepEqual(new Set(records.map((r) => r.headers['summa-event-id'])), new Set(eventIds));
    assert.equal(await waitUntilOutboxEmpty(20_000), 0);
  });
});
