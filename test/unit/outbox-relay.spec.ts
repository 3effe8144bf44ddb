import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { OutboxRelay } from '../../src/outbox/outbox-relay.ts';
import type { OutgoingRecord } from '../../src/platform/kafka/records.ts';
import type { OutboxRow } from '../../src/outbox/outbox-store.ts';
import type { Pool } from '../../src/platform/db/pool.ts';
import { createRelayMetrics } from '../../src/relay/metrics.ts';

type Step = 'BEGIN' | 'claim' | 'delete' | 'COMMIT' | 'ROLLBACK';

function stepOf(sql: string): Step {
  if (/^\s*BEGIN\b/.test(sql)) return 'BEGIN';
  if (/FOR UPDATE SKIP LOCKED/.test(sql)) return 'claim';
  if (/^\s*DELETE FROM\b/.test(sql)) return 'delete';
  if (/^\s*COMMIT\s*$/.test(sql)) return 'COMMIT';
  if (/^\s*ROLLBACK\s*$/.test(sql)) return 'ROLLBACK';
  throw new Error(`unexpected statement: ${sql}`);
}

const BATCH_SIZE = 10;

/**
 * A pool whose one client answers the claim with `claimable` and records every statement, and a
 * publisher that records what it is asked to send; both write to one log so the order shows.
 */
function setup(claimable: OutboxRow[]) {
  const log: string[] = [];
  const statements: { step: Step; params: unknown[] | undefined }[] = [];
  const failures: Partial<Record<Step, Error>> = {};
  const client = {
    async query(sql: string, params?: unknown[]) {
      const step = stepOf(sql);
      log.push(step);
      statements.push({ step, params });
      const failure = failures[step];
      if (failure) throw failure;
      return { rows: step === 'claim' ? claimable.slice(0, params?.[0] as number) : [] };
    },
    release() {
      log.push('release');
    },
  };
  const pool = {
    async connect() {
      log.push('connect');
      return client;
    },
  } as unknown as Pool;
  const publisher = {
    published: [] as { topic: string; records: OutgoingRecord[] }[],
    failOnTopic: undefined as string | undefined,
    failure: new Error('broker unavailable'),
    async publish(topic: string, records: OutgoingRecord[]): Promise<void> {
      log.push(`publish ${topic}`);
      if (topic === publisher.failOnTopic) throw publisher.failure;
      publisher.published.push({ topic, records });
    },
  };
  const metrics = createRelayMetrics(new Registry(), pool);
  const relay = new OutboxRelay(
    pool,
    'postgres://unused',
    publisher,
    { batchSize: BATCH_SIZE, workers: 1, pollIntervalMs: 1_000, lingerMs: 0 },
    pino({ level: 'silent' }),
    metrics,
  );
  const publishedCount = async () => (await metrics.published.get()).values[0]?.value ?? 0;
  const paramsOf = (step: Step) => statements.filter((s) => s.step === step).map((s) => s.params);
  return { relay, log, failures, publisher, publishedCount, paramsOf };
}

function row(id: number, topic = 'sums', headers: Record<string, string> = {}): OutboxRow {
  return {
    id: String(id),
    event_id: `00000000-0000-4000-8000-${String(id).padStart(12, '0')}`,
    topic,
    message_key: `request-${id}`,
    payload: `{"n":${id}}`,
    headers,
    created_at: new Date(0),
  };
}

describe('OutboxRelay.relayBatch()', () => {
  it('claims, publishes, deletes and commits in that order, on one connection it then releases', async () => {
    const { relay, log, publishedCount, paramsOf } = setup([row(1), row(2), row(3)]);
    assert.equal(await relay.relayBatch(), 3);
    assert.deepEqual(log, ['connect', 'BEGIN', 'claim', 'publish sums', 'delete', 'COMMIT', 'release']);
    assert.deepEqual(paramsOf('claim'), [[BATCH_SIZE]], 'it claims at most a batch');
    assert.equal(await publishedCount(), 3);
  });

  it('publishes and deletes nothing when nothing is claimed, and still commits and releases', async () => {
    const { relay, log, publisher, publishedCount } = setup([]);
    assert.equal(await relay.relayBatch(), 0);
    assert.deepEqual(log, ['connect', 'BEGIN', 'claim', 'COMMIT', 'release']);
    assert.deepEqual(publisher.published, []);
    assert.equal(await publishedCount(), 0);
  });

  it('rolls back without deleting when a publish fails, releases the connection and throws the error', async () => {
    const { relay, log, publisher, publishedCount } = setup([row(1, 'a'), row(2, 'b'), row(3, 'a')]);
    publisher.failOnTopic = 'b';
    await assert.rejects(relay.relayBatch(), publisher.failure);
    assert.deepEqual(log, ['connect', 'BEGIN', 'claim', 'publish a', 'publish b', 'ROLLBACK', 'release']);
    assert.equal(await publishedCount(), 0);
  });

  it('rolls back, releases and throws when the delete fails after the publish', async () => {
    const { relay, log, failures, publishedCount } = setup([row(1)]);
    failures.delete = new Error('connection lost');
    await assert.rejects(relay.relayBatch(), failures.delete);
    assert.deepEqual(log, ['connect', 'BEGIN', 'claim', 'publish sums', 'delete', 'ROLLBACK', 'release']);
    assert.equal(await publishedCount(), 0);
  });

  it('releases the connection and throws when the commit fails', async () => {
    const { relay, log, failures } = setup([row(1)]);
    failures.COMMIT = new Error('connection lost');
    await assert.rejects(relay.relayBatch(), failures.COMMIT);
    assert.deepEqual(log.slice(-3), ['COMMIT', 'ROLLBACK', 'release']);
  });

  it('publishes one batch per topic, in claim order, each record with its key, payload and event headers', async () => {
    const rows = [row(1, 'a'), row(2, 'b', { 'x-custom': 'kept' }), row(3, 'a', { 'summa-event-id': 'forged', 'content-type': 'text/plain' })];
    const { relay, publisher } = setup(rows);
    await relay.relayBatch();
    const recordOf = (r: OutboxRow, extra: Record<string, string> = {}): OutgoingRecord => ({
      key: r.message_key,
      value: r.payload,
      headers: { ...extra, 'content-type': 'application/json', 'summa-event-id': r.event_id },
    });
    assert.deepEqual(publisher.published, [
      { topic: 'a', records: [recordOf(rows[0]!), recordOf(rows[2]!)] },
      { topic: 'b', records: [recordOf(rows[1]!, { 'x-custom': 'kept' })] },
    ]);
  });

  it('deletes exactly the ids it published', async () => {
    const rows = [row(7, 'a'), row(8, 'b'), row(12, 'a')];
    const { relay, publisher, paramsOf } = setup(rows);
    await relay.relayBatch();
    assert.deepEqual(paramsOf('delete'), [[['7', '8', '12']]]);
    const publishedEventIds = publisher.published.flatMap((batch) => batch.records.map((r) => r.headers?.['summa-event-id'])).sort();
    assert.deepEqual(publishedEventIds, rows.map((r) => r.event_id).sort());
  });
});
