import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError, UserError } from '@platformatic/kafka';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { BUSY_POLL_MS, OutboxRelay, pollDelayAfter, type OutboxRelayOptions } from '../../src/outbox/outbox-relay.ts';
import type { OutgoingRecord } from '../../src/platform/kafka/records.ts';
import type { OutboxRow } from '../../src/outbox/outbox-store.ts';
import type { Pool } from '../../src/platform/db/pool.ts';
import { createRelayMetrics } from '../../src/relay/metrics.ts';

type Step = 'claim' | 'delete' | 'release' | 'charge';

function stepOf(sql: string): Step {
  if (/FOR UPDATE SKIP LOCKED/.test(sql) && /^\s*WITH\b|^\s*UPDATE\b/.test(sql)) return 'claim';
  if (/^\s*DELETE FROM\b/.test(sql)) return 'delete';
  if (/attempts = attempts \+ 1/.test(sql)) return 'charge';
  if (/claimed_by = NULL/.test(sql)) return 'release';
  throw new Error(`unexpected statement: ${sql}`);
}

const BATCH_SIZE = 10;
const LEASE_MS = 30_000;
const MAX_ATTEMPTS = 3;

/**
 * A pool that answers the claim with `claimable` and records every statement, and a publisher that
 * records what it is asked to send; both write to one log so the order shows. The relay must never
 * hold a connection (pool.connect) or open a transaction: each statement is one pool.query.
 */
function setup(claimable: OutboxRow[], overrides: Partial<OutboxRelayOptions> = {}) {
  const log: string[] = [];
  const statements: { step: Step; params: unknown[] | undefined }[] = [];
  const failures: Partial<Record<Step, Error>> = {};
  const pool = {
    async connect() {
      throw new Error('the relay holds no connection across statements');
    },
    // A statement comes as text with its parameters, or prepared: { name, text, values }.
    async query(statement: string | { text: string; values: unknown[] }, values?: unknown[]) {
      const [sql, params] = typeof statement === 'string' ? [statement, values] : [statement.text, statement.values];
      if (/^\s*(BEGIN|COMMIT|ROLLBACK)\b/.test(sql)) throw new Error(`the relay opens no transaction: ${sql}`);
      const step = stepOf(sql);
      log.push(step);
      statements.push({ step, params });
      const failure = failures[step];
      if (failure) throw failure;
      const ids = (params?.[0] ?? []) as string[];
      if (step === 'claim') return { rows: claimable.slice(0, params?.[0] as number) };
      if (step === 'delete') return { rowCount: ids.length, rows: [] };
      if (step === 'charge') {
        const rows = claimable
          .filter((r) => ids.includes(r.id))
          .map((r) => ({ id: r.id, event_id: r.event_id, topic: r.topic, attempts: r.attempts + 1, parked: r.attempts + 1 >= MAX_ATTEMPTS }));
        return { rowCount: rows.length, rows };
      }
      return { rowCount: ids.length, rows: [] };
    },
  } as unknown as Pool;
  const publisher = {
    published: [] as { topic: string; records: OutgoingRecord[] }[],
    /** Fails every publish to the topic with the error. */
    failures: new Map<string, Error>(),
    /** Fails every publish that carries a record with this key, with the error. */
    recordFailures: new Map<string, Error>(),
    async publish(topic: string, records: OutgoingRecord[]): Promise<void> {
      log.push(`publish ${topic} ${records.map((r) => r.key.replace('request-', '')).join(',')}`);
      const failure = publisher.failures.get(topic) ?? records.map((r) => publisher.recordFailures.get(r.key)).find(Boolean);
      if (failure) throw failure;
      publisher.published.push({ topic, records });
    },
  };
  const logged: Record<string, any>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line)) });
  const metrics = createRelayMetrics(new Registry(), pool, 604_800);
  const relay = new OutboxRelay(
    pool,
    // Refused at once, for the tests that start() the relay: its listener then retries in the background.
    'postgres://127.0.0.1:1/unused',
    publisher,
    { batchSize: BATCH_SIZE, workers: 1, pollIntervalMs: 1_000, lingerMs: 0, leaseMs: LEASE_MS, maxAttempts: MAX_ATTEMPTS, ...overrides },
    logger,
    metrics,
  );
  const publishedCount = async () => (await metrics.published.get()).values[0]?.value ?? 0;
  const paramsOf = (step: Step) => statements.filter((s) => s.step === step).map((s) => s.params);
  return { relay, log, logged, failures, publisher, publishedCount, paramsOf };
}

function row(id: number, topic = 'sums', headers: Record<string, string> = {}, attempts = 0): OutboxRow {
  return {
    id: String(id),
    event_id: `00000000-0000-4000-8000-${String(id).padStart(12, '0')}`,
    topic,
    message_key: `request-${id}`,
    payload: `{"n":${id}}`,
    headers,
    created_at: new Date(0),
    attempts,
  };
}

const unknownTopic = (topic: string) => new UserError(`Unknown topic ${topic}.`);

describe('OutboxRelay.relayBatch()', () => {
  it('claims, publishes and deletes in that order, each statement on its own, with no transaction open during the publish', async () => {
    const { relay, log, publishedCount, paramsOf } = setup([row(1), row(2), row(3)]);
    assert.equal(await relay.relayBatch(), 3);
    assert.deepEqual(log, ['claim', 'publish sums 1,2,3', 'delete']);
    const [[limit, claimant, leaseMs]] = paramsOf('claim') as [[number, string, number]];
    assert.equal(limit, BATCH_SIZE, 'it claims at most a batch');
    assert.equal(leaseMs, LEASE_MS);
    assert.match(claimant, /#1$/, 'each claim has a token of its own');
    assert.deepEqual(paramsOf('delete'), [[['1', '2', '3'], claimant]], 'it deletes only rows still held under its claim');
    assert.equal(await publishedCount(), 3);
  });

  it('gives each claim a token of its own', async () => {
    const { relay, paramsOf } = setup([row(1)]);
    await relay.relayBatch();
    await relay.relayBatch();
    const [first, second] = paramsOf('claim').map((params) => params![1]);
    assert.notEqual(first, second);
  });

  it('publishes and deletes nothing when nothing is claimed', async () => {
    const { relay, log, publisher, publishedCount } = setup([]);
    assert.equal(await relay.relayBatch(), 0);
    assert.deepEqual(log, ['claim']);
    assert.deepEqual(publisher.published, []);
    assert.equal(await publishedCount(), 0);
  });

  it('when Kafka cannot be reached, releases the claimed rows it did not publish, deletes what it did, and throws', async () => {
    const { relay, log, publisher, publishedCount, paramsOf } = setup([row(1, 'a'), row(2, 'b'), row(3, 'c')]);
    const outage = new Error('connection refused');
    publisher.failures.set('b', outage);
    await assert.rejects(relay.relayBatch(), outage);
    // Once the broker fails one topic, the next would only wait for the same failure.
    assert.deepEqual(log, ['claim', 'publish a 1', 'publish b 2', 'delete', 'release']);
    const claimant = paramsOf('claim')[0]![1];
    assert.deepEqual(paramsOf('delete'), [[['1'], claimant]]);
    assert.deepEqual(paramsOf('release'), [[['2', '3'], claimant]], 'no attempt is charged to the rows for an outage');
    assert.equal(await publishedCount(), 1);
  });

  it('charges a failure that is the rows\' own (their topic does not exist) to them, and relays the other topics', async () => {
    const { relay, log, logged, publisher, paramsOf } = setup([row(1, 'gone'), row(2, 'sums'), row(3, 'gone'), row(4, 'sums')]);
    publisher.failures.set('gone', unknownTopic('gone'));
    assert.equal(await relay.relayBatch(), 4);
    assert.deepEqual(log, ['claim', 'publish gone 1,3', 'publish sums 2,4', 'delete', 'charge']);
    const claimant = paramsOf('claim')[0]![1];
    assert.deepEqual(paramsOf('delete'), [[['2', '4'], claimant]]);
    const [[ids, chargedClaimant, reason, retryInMs, maxAttempts]] = paramsOf('charge') as [[string[], string, string, number, number]];
    assert.deepEqual(ids, ['1', '3']);
    assert.equal(chargedClaimant, claimant);
    assert.match(reason, /Unknown topic gone/);
    assert.ok(retryInMs >= 1_000, `the rows are retried later, not at once (${retryInMs} ms)`);
    assert.equal(maxAttempts, MAX_ATTEMPTS);
    assert.ok(logged.some((line) => line.level === 40 && /Unknown topic gone/.test(line.reason)), 'the failure is logged with its reason');
  });

  it('retries rows that failed before later each time: the delay grows with their attempts', async () => {
    const delays: number[] = [];
    for (const attempts of [0, 1]) {
      const { relay, publisher, paramsOf } = setup([row(1, 'gone', {}, attempts)]);
      publisher.failures.set('gone', unknownTopic('gone'));
      await relay.relayBatch();
      delays.push(paramsOf('charge')[0]![3] as number);
    }
    assert.ok(delays[1]! > delays[0]!, `${delays}`);
  });

  it('logs the rows it parked as an error, with their event ids, topic and reason', async () => {
    const { relay, logged, publisher } = setup([row(1, 'gone', {}, MAX_ATTEMPTS - 1), row(2, 'gone', {}, 0)]);
    publisher.failures.set('gone', unknownTopic('gone'));
    await relay.relayBatch();
    const parked = logged.filter((line) => line.level === 50);
    assert.equal(parked.length, 1, JSON.stringify(logged));
    assert.deepEqual(parked[0]!.eventIds, [row(1).event_id]);
    assert.equal(parked[0]!.topic, 'gone');
    assert.match(parked[0]!.reason, /Unknown topic gone/);
    assert.match(parked[0]!.msg, /parked/);
  });

  it('finds the record Kafka refuses in a batch by halving it, and charges only that one', async () => {
    const rows = [1, 2, 3, 4, 5].map((id) => row(id));
    const { relay, publisher, paramsOf } = setup(rows);
    publisher.recordFailures.set('request-4', new ProtocolError('MESSAGE_TOO_LARGE'));
    assert.equal(await relay.relayBatch(), 5);
    const deleted = (paramsOf('delete')[0]![0] as string[]).slice().sort();
    assert.deepEqual(deleted, ['1', '2', '3', '5']);
    assert.deepEqual(paramsOf('charge').map((params) => params![0]), [['4']]);
  });

  it('throws when the delete fails after the publish, leaving the rows to their lease', async () => {
    const { relay, log, failures, publishedCount } = setup([row(1)]);
    failures.delete = new Error('connection lost');
    await assert.rejects(relay.relayBatch(), failures.delete);
    assert.deepEqual(log, ['claim', 'publish sums 1', 'delete']);
    assert.equal(await publishedCount(), 0);
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
    assert.deepEqual(paramsOf('delete')[0]![0], ['7', '12', '8']);
    const publishedEventIds = publisher.published.flatMap((batch) => batch.records.map((r) => r.headers?.['summa-event-id'])).sort();
    assert.deepEqual(publishedEventIds, rows.map((r) => r.event_id).sort());
  });
});

/** Resolves once `done()` holds; rejects after `timeoutMs`. */
async function until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('OutboxRelay wake-ups', () => {
  const wake = (relay: OutboxRelay) => (relay as unknown as { wake(): void }).wake();

  it('claims at once when woken at rest: the linger is for wake-ups that come while a batch is in flight', async () => {
    const lingerMs = 3_000;
    const { relay, log } = setup([], { lingerMs, pollIntervalMs: 60_000 });
    relay.start();
    try {
      await until(() => log.length === 1, 1_000, 'the first claim');
      await new Promise((resolve) => setTimeout(resolve, 50)); // asleep until woken
      wake(relay);
      await until(() => log.length === 2, lingerMs / 3, 'a claim after the wake-up, with no batch in flight');
    } finally {
      await relay.stop();
    }
  });

  it('lingers after a wake-up that comes while another worker publishes, so that one batch carries several commits', async () => {
    const claimable: OutboxRow[] = [];
    const { relay, log, publisher } = setup(claimable, { lingerMs: 200, pollIntervalMs: 60_000, workers: 2 });
    const claims = () => log.filter((step) => step === 'claim').length;
    let finishPublish: () => void = () => {};
    const published = publisher.publish;
    publisher.publish = async (topic, records) => {
      await new Promise<void>((resolve) => (finishPublish = resolve));
      return published(topic, records);
    };
    relay.start();
    try {
      await until(() => claims() === 2, 1_000, 'both workers claimed once');
      await new Promise((resolve) => setTimeout(resolve, 50)); // both asleep until woken
      // One worker claims an event and publishes it until told to finish; the other finds none.
      claimable.push(row(1));
      wake(relay);
      await until(() => claims() === 3, 1_000, 'a worker claimed the event');
      claimable.length = 0;
      await until(() => claims() === 4, 1_000, 'the other worker claimed too');
      await new Promise((resolve) => setTimeout(resolve, 50));
      const wokenAt = Date.now();
      wake(relay);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(claims(), 4, 'the idle worker waits the linger while a batch is in flight');
      await until(() => claims() === 5, 2_000, 'a claim after the linger');
      assert.ok(Date.now() - wokenAt >= 150, 'it waited about the linger');
    } finally {
      finishPublish();
      await relay.stop();
    }
  });
});

describe('pollDelayAfter()', () => {
  const options = { batchSize: 500, pollIntervalMs: 500 };

  it('claims again at once after a full batch, soon after one that found events, after the poll interval after an empty one', () => {
    assert.equal(pollDelayAfter(500, options), 0);
    assert.equal(pollDelayAfter(1, options), BUSY_POLL_MS);
    assert.equal(pollDelayAfter(499, options), BUSY_POLL_MS);
    assert.equal(pollDelayAfter(0, options), 500);
  });

  it('never waits longer after events than after none', () => {
    assert.equal(pollDelayAfter(3, { batchSize: 500, pollIntervalMs: 20 }), 20);
  });
});
