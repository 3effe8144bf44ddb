// The totals consumer under records and failures that must neither lose a sum nor stop the others:
// events of a newer version, values PostgreSQL refuses, a database that fails for a while, a
// missing dead-letter topic, and a Kafka group that lost its offsets; against real PostgreSQL and
// Kafka.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, describe, it } from 'node:test';
import { Admin, compatibilityPartitioner } from '@platformatic/kafka';
import pg from 'pg';
import { Registry } from 'prom-client';
import { decodeSumAccepted, encodeSumAccepted, SUM_ACCEPTED_VERSION, type SumAccepted } from '../../src/events/sum-accepted.ts';
import { createBatchConsumer } from '../../src/platform/kafka/batch-consumer.ts';
import { createEventPublisher, type EventPublisher } from '../../src/platform/kafka/publisher.ts';
import type { OutgoingRecord } from '../../src/platform/kafka/records.ts';
import { ensureTopic } from '../../src/platform/kafka/topics.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { createBatchApplier } from '../../src/totals/batch-applier.ts';
import { readTotalsConfig, type TotalsConfig } from '../../src/totals/config.ts';
import { createTotalsMetrics } from '../../src/totals/metrics.ts';
import { TotalsStore } from '../../src/totals/totals-store.ts';
import { startTotals, type RunningTotals } from '../../src/totals/totals-service.ts';
import { createTestDatabase, testKafkaBrokers, uniqueName } from '../support/test-environment.ts';

const logger = createLogger('totals-faults-test', { LOG_LEVEL: 'silent' });
const PARTITIONS = 3;
const kafka = () => ({ brokers: testKafkaBrokers(), clientId: 'totals-faults-test' });

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

async function waitUntil(what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The partition the publisher's partitioner sends `key` to. */
const partitionOf = (key: string) => compatibilityPartitioner(undefined as never, Buffer.from(key)) % PARTITIONS;

/** A fresh key that lands on `partition`. */
function keyOn(partition: number, prefix = 'key'): string {
  for (;;) {
    const key = `${prefix}-${randomUUID()}`;
    if (partitionOf(key) === partition) return key;
  }
}

function sumAccepted(requestId: string, num1: bigint, num2: bigint, acceptedAt = new Date()): SumAccepted {
  return { eventId: randomUUID(), requestId, num1, num2, sum: num1 + num2, acceptedAt };
}

/** A sum-accepted record keyed by its request id, as the relay publishes it. */
const recordOf = (event: SumAccepted, overrides: Record<string, unknown> = {}): OutgoingRecord => ({
  key: event.requestId,
  value: JSON.stringify({ ...(JSON.parse(encodeSumAccepted(event)) as object), ...overrides }),
});

/** A totals service on its own database, topic and group, and what a test needs around it. */
async function scenario(env: Record<string, string> = {}) {
  const database = await createTestDatabase('totals_faults');
  cleanups.push(() => database.drop());
  const sql = new pg.Pool({ connectionString: database.url });
  cleanups.push(() => sql.end());
  const publisher: EventPublisher = createEventPublisher(kafka());
  cleanups.push(() => publisher.close());
  const admin = new Admin({ clientId: 'totals-faults-admin', bootstrapBrokers: testKafkaBrokers() });
  cleanups.push(() => admin.close());
  const config: TotalsConfig = readTotalsConfig({
    TOTALS_HTTP_PORT: '0',
    DATABASE_URL: database.url,
    KAFKA_BROKERS: testKafkaBrokers().join(','),
    KAFKA_TOPIC: uniqueName('faults'),
    KAFKA_TOPIC_PARTITIONS: String(PARTITIONS),
    TOTALS_GROUP_ID: uniqueName('faults-group'),
    TOTALS_BATCH_SIZE: '64',
    ...env,
  });
  let totals: RunningTotals | undefined;
  cleanups.push(async () => totals?.stop());

  const get = async (path: string) => {
    const response = await fetch(`http://127.0.0.1:${totals!.httpPort}${path}`);
    return { status: response.status, body: (await response.json()) as any };
  };
  const metrics = async () => (await fetch(`http://127.0.0.1:${totals!.httpPort}/metrics`)).text();
  const count = async () => ((await get('/total')).body as { count: number }).count;
  return {
    config,
    sql,
    admin,
    publish: (records: OutgoingRecord[]) => publisher.publish(config.topic, records),
    get,
    metrics,
    count,
    async start() {
      totals = await startTotals(config, logger);
    },
    async stop() {
      const running = totals;
      totals = undefined;
      await running?.stop();
    },
    async waitForCount(expected: number, timeoutMs = 30_000) {
      await waitUntil(`${expected} events applied`, async () => (await count()) >= expected, timeoutMs);
      assert.equal(await count(), expected);
    },
    async rejected() {
      const { rows } = await sql.query<{ kafka_partition: number; kafka_offset: string; reason: string; message_key: string | null; dead_lettered: boolean | null }>(
        'SELECT kafka_partition, kafka_offset::text, reason, message_key, dead_lettered FROM totals.rejected_records ORDER BY kafka_partition, kafka_offset',
      );
      return rows;
    },
    async isApplied(requestId: string) {
      return (await get(`/sums/${encodeURIComponent(requestId)}`)).status === 200;
    },
  };
}

/** The samples of summa_totals_partitions_stalled in a /metrics text. */
const stalledSeries = (metrics: string) => metrics.split('\n').filter((line) => line.startsWith('summa_totals_partitions_stalled{'));

/** A counter's value in a /metrics text; 0 when it has no sample. */
function counterValue(metrics: string, name: string): number {
  const match = new RegExp(`^${name}\\{service="totals"\\} (\\S+)$`, 'm').exec(metrics);
  return match ? Number(match[1]) : 0;
}

describe('totals consumer faults against real PostgreSQL and Kafka', { timeout: 180_000 }, () => {
  it('stops a partition at an event of a newer version, applies the other partitions, says why on /readyz and in metrics; a newer release applies it', async () => {
    const s = await scenario();
    await s.start();
    const stuckKey = keyOn(0, 'stuck');
    const before = sumAccepted(keyOn(0, 'before'), 1n, 1n);
    const newer = sumAccepted(stuckKey, 100n, 5n);
    const after = sumAccepted(keyOn(0, 'after'), 7n, 7n);
    const others = [sumAccepted(keyOn(1), 10n, 0n), sumAccepted(keyOn(2), 20n, 0n)];
    await s.publish([
      { ...recordOf(before), key: stuckKey },
      { ...recordOf(newer, { version: SUM_ACCEPTED_VERSION + 1 }), key: stuckKey },
      { ...recordOf(after), key: stuckKey },
      ...others.map((event) => recordOf(event)),
    ]);
    // Partition 0 holds before (offset 0), newer (1) and after (2).
    await s.waitForCount(3);
    await waitUntil('/readyz to answer 503', async () => (await s.get('/readyz')).status === 503);
    const readiness = await s.get('/readyz');
    assert.equal(readiness.body.status, 'not ready');
    assert.match(readiness.body.reason, /^partition 0 stalled at offset 1 \(newer_event_version\): event version 2 is newer than this release reads \(1\)/);
    assert.deepEqual(stalledSeries(await s.metrics()), ['summa_totals_partitions_stalled{partition="0",reason="newer_event_version",service="totals"} 1']);

    // The other partitions go on, in later batches too.
    const later = sumAccepted(keyOn(1), 30n, 0n);
    await s.publish([recordOf(later)]);
    await s.waitForCount(4);
    assert.equal(await s.isApplied(before.requestId), true);
    assert.equal(await s.isApplied(after.requestId), false, 'nothing after the stop is applied');
    assert.deepEqual(await s.rejected(), [], 'a newer event is not rejected');
    const stored = await s.sql.query<{ next_offset: string }>('SELECT next_offset::text FROM totals.consumer_offsets WHERE partition = 0');
    assert.deepEqual(stored.rows, [{ next_offset: '1' }]);
    // Kafka's commit follows the database's, at most every TOTALS_COMMIT_INTERVAL_MS: wait for it.
    const committedOnKafka = async () => {
      const [group] = await s.admin.listConsumerGroupOffsets({ groups: [s.config.groupId] });
      return group!.topics.find((t) => t.name === s.config.topic)?.partitions.find((p) => p.partitionIndex === 0)?.committedOffset;
    };
    await waitUntil('Kafka to hold the group at the stopped record', async () => (await committedOnKafka()) !== undefined, 10_000).catch(() => {});
    assert.equal(await committedOnKafka(), 1n, 'Kafka holds the group at the stopped record');
    await s.stop();

    // A newer release reads version 2 (here: as version 1 with another number) and goes on from the stop.
    const newerRelease = createBatchConsumer(
      { ...kafka(), groupId: s.config.groupId, topic: s.config.topic },
      createBatchApplier({
        store: new TotalsStore(s.sql),
        groupId: s.config.groupId,
        logger,
        metrics: createTotalsMetrics(new Registry(), new TotalsStore(s.sql)),
        decode: (value) => decodeSumAccepted(JSON.stringify({ ...(JSON.parse(value.toString()) as object), version: SUM_ACCEPTED_VERSION })),
      }),
    );
    await newerRelease.start();
    try {
      await waitUntil('the newer release to apply partition 0', async () => {
        const { rows } = await s.sql.query<{ count: string }>('SELECT count::text FROM totals.total');
        return rows[0]!.count === '6';
      });
    } finally {
      await newerRelease.close();
    }

    // And this release, started again, is ready and goes on after it.
    await s.start();
    assert.equal((await s.get('/readyz')).status, 200);
    assert.equal(await s.isApplied(newer.requestId), true);
    assert.equal(await s.isApplied(after.requestId), true);
    const last = sumAccepted(keyOn(0, 'last'), 3n, 0n);
    await s.publish([recordOf(last)]);
    await s.waitForCount(7);
    assert.deepEqual((await s.get('/total')).body, { total: String(2n + 105n + 14n + 10n + 20n + 30n + 3n), count: 7 });
    assert.deepEqual(stalledSeries(await s.metrics()), []);
    assert.equal((await s.get('/readyz')).status, 200);
  });

  it('rejects records whose values PostgreSQL would refuse, quarantines an event it refuses, and applies every valid record around them', async () => {
    const s = await scenario();
    await s.start();
    // A rule the decoder does not know of: PostgreSQL refuses such an event whatever the decoder says.
    await s.sql.query("ALTER TABLE totals.applied_events ADD CONSTRAINT no_refused_requests CHECK (request_id NOT LIKE 'refused-%')");
    const valid = [sumAccepted('valid-1', 1n, 2n), sumAccepted('valid-2', 3n, 4n), sumAccepted('valid-3', 5n, 6n)];
    const key = keyOn(1, 'poison');
    await s.publish(
      [
        recordOf(valid[0]!),
        recordOf(sumAccepted('nul\u0000in-id', 1n, 1n)),
        recordOf(valid[1]!),
        recordOf(sumAccepted('too-early', 1n, 1n, new Date('-005000-01-01T00:00:00.000Z'))),
        recordOf(sumAccepted(`long-${randomBytes(3_000).toString('base64')}`, 1n, 1n)),
        recordOf(sumAccepted('refused-1', 1n, 1n)),
        { key: 'nul\u0000key', value: 'not json' },
        recordOf(valid[2]!),
      ].map((record) => ({ ...record, key: record.key === 'nul\u0000key' ? record.key : key })),
    );
    await s.waitForCount(3);
    await waitUntil('five rejected records', async () => (await s.rejected()).length === 5);
    const rejected = await s.rejected();
    // The row is refused by the partition it would go to: generation 0 of a new database.
    assert.deepEqual(
      rejected.map((r) => r.reason).sort(),
      [
        'PostgreSQL refused it: new row for relation "applied_events_g0" violates check constraint "no_refused_requests" (SQLSTATE 23514)',
        'acceptedAt is before 4714-11-24 BC, the first timestamp PostgreSQL stores',
        'requestId contains a NUL character',
        'requestId is longer than 2000 bytes',
        'value is not JSON',
      ],
    );
    assert.ok(rejected.every((r) => r.dead_lettered === true));
    assert.equal(rejected.find((r) => r.reason === 'value is not JSON')!.message_key, 'nul\uFFFDkey');
    assert.deepEqual((await s.get('/total')).body, { total: '21', count: 3 });
    assert.equal(counterValue(await s.metrics(), 'summa_totals_records_rejected_total'), 5);
    assert.equal((await s.get('/readyz')).status, 200);
  });

  it('stores acceptedAt exactly at the edges of PostgreSQL\'s range, whatever the time zone of the process', async () => {
    const zone = process.env.TZ;
    // Paris kept local mean time (UTC+0:09:21) before 1911: a whole-minute offset misplaces it.
    process.env.TZ = 'Europe/Paris';
    cleanups.push(async () => {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    });
    const s = await scenario();
    await s.start();
    const instants = ['-004713-11-24T00:00:00.000Z', '1800-01-01T00:00:00.000Z', '2026-06-01T12:34:56.789Z', '+275760-09-13T00:00:00.000Z'];
    const events = instants.map((instant, i) => sumAccepted(`edge-${i}`, BigInt(i), 1n, new Date(instant)));
    await s.publish(events.map((event) => recordOf(event)));
    await s.waitForCount(events.length);
    const { rows } = await s.sql.query<{ request_id: string; ms: string }>(
      'SELECT request_id, (extract(epoch FROM accepted_at) * 1000)::bigint::text AS ms FROM totals.applied_events ORDER BY request_id',
    );
    assert.deepEqual(
      rows,
      events.map((event) => ({ request_id: event.requestId, ms: String(event.acceptedAt.getTime()) })),
    );
  });

  it('retries a batch the database fails for a reason of its own, shows the stall on /readyz and in metrics, and applies it once the database is back', async () => {
    const s = await scenario({ TOTALS_STALL_AFTER_MS: '1000' });
    await s.start();
    await s.publish([recordOf(sumAccepted('first', 1n, 0n))]);
    await s.waitForCount(1);
    await s.sql.query('ALTER TABLE totals.applied_events RENAME TO applied_events_away');
    let renamed = true;
    cleanups.push(async () => {
      if (renamed) await s.sql.query('ALTER TABLE totals.applied_events_away RENAME TO applied_events');
    });
    const key = keyOn(2, 'waiting');
    await s.publish([recordOf(sumAccepted('second', 2n, 0n)), recordOf(sumAccepted('third', 3n, 0n))].map((record) => ({ ...record, key })));

    await waitUntil('/readyz to answer 503', async () => (await s.get('/readyz')).status === 503, 20_000);
    const readiness = await s.get('/readyz');
    assert.match(readiness.body.reason, /^partition 2 stalled at offset 0 \(retrying\): a batch has failed for \d+s \(\d+ attempts\), retrying: relation "totals.applied_events" does not exist/);
    assert.deepEqual(stalledSeries(await s.metrics()), ['summa_totals_partitions_stalled{partition="2",reason="retrying",service="totals"} 1']);
    assert.deepEqual(await s.rejected(), [], 'a database that fails is no reason to reject a record');

    await s.sql.query('ALTER TABLE totals.applied_events_away RENAME TO applied_events');
    renamed = false;
    await s.waitForCount(3);
    await waitUntil('/readyz to answer 200', async () => (await s.get('/readyz')).status === 200);
    assert.deepEqual(stalledSeries(await s.metrics()), []);
    assert.equal((await s.get('/total')).body.total, '6');
  });

  it('goes on applying valid records when the dead-letter topic is missing: the poison record is kept in totals.rejected_records', async () => {
    const s = await scenario();
    await s.start();
    await s.admin.deleteTopics({ topics: [s.config.deadLetterTopic] });
    await waitUntil('the dead-letter topic to be gone', async () => !(await s.admin.listTopics()).includes(s.config.deadLetterTopic));
    const key = keyOn(0, 'mixed');
    await s.publish([
      { ...recordOf(sumAccepted('valid-1', 1n, 1n)), key },
      { key, value: 'not json at all' },
      { ...recordOf(sumAccepted('valid-2', 2n, 2n)), key },
    ]);
    await s.waitForCount(2, 45_000);
    assert.deepEqual(
      (await s.rejected()).map(({ kafka_partition, kafka_offset, reason, dead_lettered }) => ({ kafka_partition, kafka_offset, reason, dead_lettered })),
      [{ kafka_partition: 0, kafka_offset: '1', reason: 'value is not JSON', dead_lettered: false }],
    );
    const metrics = await s.metrics();
    assert.equal(counterValue(metrics, 'summa_totals_dead_letter_failures_total'), 1);
    assert.equal(counterValue(metrics, 'summa_totals_records_rejected_total'), 1);
    assert.equal((await s.admin.listTopics()).includes(s.config.deadLetterTopic), false, 'the topic was not created by writing to it');
  });

  it('resumes from the offsets stored in PostgreSQL when the Kafka group lost its own, instead of reading the topic again', async () => {
    const s = await scenario();
    await s.start();
    await s.publish(Array.from({ length: 60 }, (_, i) => recordOf(sumAccepted(`early-${i}`, BigInt(i), 0n))));
    await s.waitForCount(60);
    await s.stop();
    // The group is empty once the service left it; deleting it takes its committed offsets along.
    await waitUntil('the group to be deleted', () => s.admin.deleteGroups({ groups: [s.config.groupId] }).then(() => true, () => false));
    await s.publish([recordOf(sumAccepted('late-1', 1n, 0n)), recordOf(sumAccepted('late-2', 2n, 0n))]);

    await s.start();
    await s.waitForCount(62);
    await new Promise((resolve) => setTimeout(resolve, 500)); // a re-read would still be counted here
    const metrics = await s.metrics();
    assert.equal(counterValue(metrics, 'summa_totals_records_consumed_total'), 2, 'only the records after the stored offsets were read');
    assert.equal(counterValue(metrics, 'summa_totals_duplicates_skipped_total'), 0);
  });

  it('does not resume a topic deleted and created again from the offsets stored for the old one', async () => {
    const s = await scenario();
    await s.start();
    const batch = (prefix: string, perPartition: number) =>
      Array.from({ length: PARTITIONS * perPartition }, (_, i) => ({ ...recordOf(sumAccepted(`${prefix}-${i}`, 1n, 0n)), key: keyOn(i % PARTITIONS, prefix) }));
    await s.publish(batch('old', 10));
    await s.waitForCount(30);
    await s.stop();

    await s.admin.deleteTopics({ topics: [s.config.topic] });
    await waitUntil('the topic to be gone', async () => !(await s.admin.listTopics()).includes(s.config.topic));
    await waitUntil('the group to be deleted', () => s.admin.deleteGroups({ groups: [s.config.groupId] }).then(() => true, () => false));
    await waitUntil('the topic to be created again', () => ensureTopic(kafka(), s.config.topic, { partitions: PARTITIONS }).then(() => true, () => false));
    // More records per partition than the stored offsets of the old topic: going by those would skip 10 of each.
    await s.publish(batch('new', 15));

    await s.start();
    await s.waitForCount(30 + 45);
  });
});
