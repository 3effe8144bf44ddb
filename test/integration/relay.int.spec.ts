import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import pg from 'pg';
import { CALCULATOR_MIGRATIONS } from '../../src/calculator/schema.ts';
import { encodeSumAccepted } from '../../src/events/sum-accepted.ts';
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

  function startRelay(options: Partial<OutboxRelayOptions> = {}): OutboxRelay {
    const relay = new OutboxRelay(
      pool,
      database.url,
      publisher,
      { batchSize: 50, workers: 2, pollIntervalMs: 200, lingerMs: 5, ...options },
      logger,
      createRelayMetrics(createMetricsRegistry('relay'), pool),
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

  it('wakes on a notification rather than waiting for the next poll', async () => {
    const topic = await freshTopic();
    startRelay({ pollIntervalMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 500)); // let it go idle
    const [eventId] = await insertEvents(topic, 1);
    const records = await collect(topic, 1, 10_000);
    assert.deepEqual(
      records.map((r) => r.headers['summa-event-id']),
      [eventId],
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
    const relay = new OutboxRelay(pool, database.url, flaky, { batchSize: 50, workers: 1, pollIntervalMs: 100, lingerMs: 0 }, logger,
      createRelayMetrics(createMetricsRegistry('relay'), pool));
    relay.start();
    cleanups.push(() => relay.stop());
    const eventIds = await insertEvents(topic, 20);
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.equal(await pending(), 20, 'nothing leaves the outbox unacknowledged');
    refuse = false;
    const records = await collect(topic, 20);
    assert.deepEqual(new Set(records.map((r) => r.headers['summa-event-id'])), new Set(eventIds));
    assert.equal(await waitUntilOutboxEmpty(), 0);
  });
});
