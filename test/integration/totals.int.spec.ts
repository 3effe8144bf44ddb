import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { encodeSumAccepted } from '../../src/events/sum-accepted.ts';
import { createBatchConsumer } from '../../src/platform/kafka/batch-consumer.ts';
import { createEventPublisher, type EventPublisher } from '../../src/platform/kafka/publisher.ts';
import type { IncomingRecord } from '../../src/platform/kafka/records.ts';
import type { OutgoingRecord } from '../../src/platform/kafka/records.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { readTotalsConfig } from '../../src/totals/config.ts';
import { startTotals, type RunningTotals } from '../../src/totals/totals-service.ts';
import { DEAD_LETTER_HEADERS } from '../../src/totals/dead-letters.ts';
import { createTestDatabase, testKafkaBrokers, uniqueName, type TestDatabase } from '../support/test-environment.ts';

const logger = createLogger('totals-test', { LOG_LEVEL: 'silent' });

function sumEvent(num1: bigint, num2: bigint, requestId: string = randomUUID()): { record: OutgoingRecord; sum: bigint; requestId: string } {
  const eventId = randomUUID();
  const value = encodeSumAccepted({ eventId, requestId, num1, num2, sum: num1 + num2, acceptedAt: new Date() });
  return { record: { key: requestId, value }, sum: num1 + num2, requestId };
}

describe('totals service against real PostgreSQL and Kafka', () => {
  let database: TestDatabase;
  let publisher: EventPublisher;
  let sql: pg.Pool;
  let totals: RunningTotals | undefined;
  const topic = uniqueName('totals');
  const config = () =>
    readTotalsConfig({
      TOTALS_HTTP_PORT: '0',
      DATABASE_URL: database.url,
      KAFKA_BROKERS: testKafkaBrokers().join(','),
      KAFKA_TOPIC: topic,
      KAFKA_TOPIC_PARTITIONS: '3',
      TOTALS_GROUP_ID: uniqueName('totals-group'),
      TOTALS_BATCH_SIZE: '64',
    });
  let settings: ReturnType<typeof config>;

  before(async () => {
    database = await createTestDatabase('totals');
    sql = new pg.Pool({ connectionString: database.url });
    publisher = createEventPublisher({ brokers: testKafkaBrokers(), clientId: 'totals-test' });
    settings = config();
    totals = await startTotals(settings, logger);
  });

  after(async () => {
    await totals?.stop();
    await publisher?.close();
    await sql?.end();
    await database?.drop();
  });

  const get = async (path: string) => {
    const response = await fetch(`http://127.0.0.1:${totals!.httpPort}${path}`);
    return { status: response.status, body: (await response.json()) as any };
  };

  async function waitForCount(count: number, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    let body = (await get('/total')).body;
    while (body.count < count && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      body = (await get('/total')).body;
    }
    return body as { total: string; count: number };
  }

  it('applies every event once though Kafka delivers some twice, exactly beyond 64 bits', async () => {
    const big = 2n ** 62n;
    // One request id of the longest kind the calculator accepts, to be looked up by URL below.
    const longId = 'ü'.repeat(64) + 'k'.repeat(64);
    const events = Array.from({ length: 300 }, (_, i) => sumEvent(big - BigInt(i), big - 1n - BigInt(i), i === 7 ? longId : randomUUID()));
    const expected = events.reduce((total, e) => total + e.sum, 0n);
    assert.ok(expected > 2n ** 64n, 'the expected total leaves 64-bit range');
    // The relay may publish an event again after a crash: here every fifth one comes twice.
    const records = [...events.map((e) => e.record), ...events.filter((_, i) => i % 5 === 0).map((e) => e.record)];
    await publisher.publish(topic, records);
    const body = await waitForCount(events.length);
    await new Promise((resolve) => setTimeout(resolve, 500)); // a late duplicate would land here
    assert.deepEqual(await (await get('/total')).body, { total: expected.toString(), count: events.length });
    assert.equal(body.total, expected.toString());
    assert.deepEqual((await get('/summation')).body, { total: expected.toString(), count: events.length });

    const found = await get(`/sums/${events[3]!.requestId}`);
    assert.equal(found.status, 200);
    assert.equal(found.body.sum, events[3]!.sum.toString());
    assert.equal(found.body.applied, true);
    assert.equal((await get(`/sums/${randomUUID()}`)).status, 404);
    const long = await get(`/sums/${encodeURIComponent(longId)}`);
    assert.equal(long.status, 200, JSON.stringify(long.body));
    assert.equal(long.body.requestId, longId);

    const metrics = await (await fetch(`http://127.0.0.1:${totals!.httpPort}/metrics`)).text();
    assert.match(metrics, /summa_totals_duplicates_skipped_total\{service="totals"\} 60\b/);
  });

  it('sends a malformed record to the dead-letter topic with its reason and goes on applying valid ones', async () => {
    const before = (await get('/total')).body;
    const valid = sumEvent(-5n, 2n);
    const later = sumEvent(7n, 8n);
    // A version no release ever writes (a newer one would stop its partition instead: totals-faults.int.spec.ts).
    const poison = '{"type":"summa.sum.accepted","version":0}';
    await publisher.publish(topic, [
      { key: 'poison', value: poison, headers: { 'x-origin': 'test' } },
      valid.record,
      { key: 'garbage', value: 'not json at all' },
      later.record,
    ]);
    const after = await waitForCount(before.count + 2);
    assert.equal(BigInt(after.total), BigInt(before.total) - 3n + 15n);
    const rejected = await sql.query('SELECT reason FROM totals.rejected_records WHERE message_key = $1', ['poison']);
    assert.equal(rejected.rows.length, 1);
    assert.match(rejected.rows[0].reason, /version/);

    // The dead letters arrive with the reason and where they came from.
    const letters = new Map<string, IncomingRecord>();
    const dlq = createBatchConsumer({ brokers: testKafkaBrokers(), clientId: 'totals-test-dlq', groupId: uniqueName('dlq-reader'), topic: settings.deadLetterTopic }, async (records) => {
      for (const record of records) letters.set(record.key ?? '', record);
    });
    await dlq.start();
    try {
      const deadline = Date.now() + 20_000;
      while ((!letters.has('poison') || !letters.has('garbage')) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      await dlq.close();
    }
    assert.equal(settings.deadLetterTopic, `${topic}.dlq`);
    const letter = letters.get('poison');
    assert.ok(letter, 'the invalid-version record reached the dead-letter topic');
    assert.equal(letter.value.toString(), poison);
    assert.match(letter.headers[DEAD_LETTER_HEADERS.reason]!, /unsupported event version 0/);
    assert.equal(letter.headers[DEAD_LETTER_HEADERS.topic], topic);
    assert.equal(letter.headers['x-origin'], 'test', 'the original headers are kept');
    const offsetRow = await sql.query<{ kafka_partition: number; kafka_offset: string }>(
      'SELECT kafka_partition, kafka_offset::text FROM totals.rejected_records WHERE message_key = $1',
      ['poison'],
    );
    assert.equal(letter.headers[DEAD_LETTER_HEADERS.partition], String(offsetRow.rows[0]!.kafka_partition));
    assert.equal(letter.headers[DEAD_LETTER_HEADERS.offset], offsetRow.rows[0]!.kafka_offset);
    assert.match(letters.get('garbage')!.headers[DEAD_LETTER_HEADERS.reason]!, /not JSON/);

    const metrics = await (await fetch(`http://127.0.0.1:${totals!.httpPort}/metrics`)).text();
    assert.match(metrics, /summa_totals_records_rejected_total\{service="totals"\} 2\b/);
  });

  it('stores the consumed offsets with the total and resumes after a restart without counting again', async () => {
    const snapshot = (await get('/total')).body;
    const offsets = await sql.query<{ next: string }>('SELECT sum(next_offset) AS next FROM totals.consumer_offsets WHERE topic = $1', [topic]);
    assert.equal(Number(offsets.rows[0]!.next), 300 + 60 + 4, 'offsets cover every record consumed');

    await totals!.stop();
    const more = sumEvent(10n, 20n);
    await publisher.publish(topic, [more.record]); // arrives while the consumer is down
    totals = await startTotals(settings, logger);
    const after = await waitForCount(snapshot.count + 1);
    assert.deepEqual(after, { total: (BigInt(snapshot.total) + 30n).toString(), count: snapshot.count + 1 });
  });
});
