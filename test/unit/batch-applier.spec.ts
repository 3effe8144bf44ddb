import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry, type Counter } from 'prom-client';
import pg from 'pg';
import { decodeSumAccepted, encodeSumAccepted, SUM_ACCEPTED_TYPE, SUM_ACCEPTED_VERSION } from '../../src/events/sum-accepted.ts';
import { createBatchApplier, NEWER_EVENT_VERSION } from '../../src/totals/batch-applier.ts';
import type { IncomingRecord } from '../../src/platform/kafka/records.ts';
import type { DeadLetter } from '../../src/totals/dead-letters.ts';
import { createTotalsMetrics, type TotalsMetrics } from '../../src/totals/metrics.ts';
import type { BatchOutcome, EventAtOffset, PartitionOffset, RejectedRecord, TotalsStore } from '../../src/totals/totals-store.ts';

interface ApplyCall {
  groupId: string;
  events: EventAtOffset[];
  rejected: RejectedRecord[];
  offsets: PartitionOffset[];
}

/** An error as node-postgres reports one PostgreSQL raised. */
function databaseError(code: string, message: string): pg.DatabaseError {
  const error = new pg.DatabaseError(message, 0, 'error');
  error.code = code;
  return error;
}

/** Records what the applier hands the store and the dead-letter sink, in order, in one log. */
function setup(options: { withSink?: boolean } = {}) {
  const log: string[] = [];
  const store = {
    calls: [] as ApplyCall[],
    outcome: { applied: 0, duplicates: 0, acceptedAtMs: [], tooOld: [], horizon: null } as BatchOutcome,
    failure: undefined as Error | undefined,
    /** Request ids PostgreSQL refuses: a batch holding one fails with this error, and findRefused names it. */
    refuses: new Map<string, pg.DatabaseError>(),
    probes: 0,
    async applyBatch(groupId: string, events: EventAtOffset[], rejected: RejectedRecord[], offsets: PartitionOffset[]): Promise<BatchOutcome> {
      log.push('store');
      // The record each event came from rides along for a quarantine; what is compared is the event.
      store.calls.push({ groupId, events: events.map(({ source: _source, ...event }) => event), rejected, offsets });
      if (store.failure) throw store.failure;
      const refusal = events.map((e) => store.refuses.get(e.event.requestId)).find(Boolean);
      if (refusal) throw refusal;
      return store.outcome;
    },
    async findRefused(events: EventAtOffset[]): Promise<Map<EventAtOffset, pg.DatabaseError>> {
      log.push('find refused');
      store.probes++;
      return new Map(events.flatMap((e) => (store.refuses.has(e.event.requestId) ? [[e, store.refuses.get(e.event.requestId)!] as const] : [])));
    },
  };
  const sink = {
    sent: [] as DeadLetter[][],
    failure: undefined as Error | undefined,
    async send(records: DeadLetter[]): Promise<void> {
      log.push('dead letters');
      sink.sent.push(records);
      if (sink.failure) throw sink.failure;
    },
  };
  const metrics = createTotalsMetrics(new Registry(), store as unknown as TotalsStore);
  const apply = createBatchApplier({
    store,
    groupId: 'totals-group',
    logger: pino({ level: 'silent' }),
    metrics,
    ...(options.withSink === false ? {} : { deadLetters: sink }),
  });
  return { apply, store, sink, metrics, log };
}

function sumAccepted(requestId: string, num1: bigint, num2: bigint) {
  return { eventId: randomUUID(), requestId, num1, num2, sum: num1 + num2, acceptedAt: new Date('2025-01-02T03:04:05.678Z') };
}

function record(topic: string, partition: number, offset: bigint, value: Buffer | string, key: string | null = 'key'): IncomingRecord {
  return { topic, topicId: `id-of-${topic}`, partition, offset, key, value: Buffer.from(value), headers: { 'summa-event-id': 'x' }, timestamp: 0n };
}

const valid = (topic: string, partition: number, offset: bigint) =>
  record(topic, partition, offset, encodeSumAccepted(sumAccepted(`r-${topic}-${partition}-${offset}`, offset, 1n)));
const garbage = (topic: string, partition: number, offset: bigint) => record(topic, partition, offset, Buffer.from([0xff, 0xfe, 0x00, 0x7b]));
/** A sum-accepted event as a newer calculator writes it: version 2, with fields this release does not know. */
const newer = (topic: string, partition: number, offset: bigint) =>
  record(topic, partition, offset, JSON.stringify({ type: SUM_ACCEPTED_TYPE, version: SUM_ACCEPTED_VERSION + 1, amount: { value: '5' } }));

const byTopicPartition = (a: PartitionOffset, b: PartitionOffset) => a.topic.localeCompare(b.topic) || a.partition - b.partition;

async function valueOf(counter: Counter): Promise<number> {
  return (await counter.get()).values[0]?.value ?? 0;
}

async function counters(metrics: TotalsMetrics) {
  return {
    consumed: await valueOf(metrics.consumed),
    applied: await valueOf(metrics.applied),
    duplicates: await valueOf(metrics.duplicates),
    rejected: await valueOf(metrics.rejected),
    deadLetterFailures: await valueOf(metrics.deadLetterFailures),
  };
}

describe('createBatchApplier', () => {
  describe('offsets', () => {
    it('commits the highest offset + 1 for each topic and partition, whatever the order within the batch', async () => {
      const { apply, store } = setup();
      await apply([
        valid('sums', 0, 5n),
        valid('sums', 1, 2n),
        valid('sums', 0, 7n),
        valid('other', 0, 10n),
        valid('sums', 0, 3n),
        valid('other', 0, 9n),
      ]);
      assert.equal(store.calls.length, 1);
      assert.deepEqual([...store.calls[0]!.offsets].sort(byTopicPartition), [
        { topic: 'other', topicId: 'id-of-other', partition: 0, nextOffset: 11n },
        { topic: 'sums', topicId: 'id-of-sums', partition: 0, nextOffset: 8n },
        { topic: 'sums', topicId: 'id-of-sums', partition: 1, nextOffset: 3n },
      ]);
    });

    it('moves past rejected records too, so they do not block their partition', async () => {
      const { apply, store } = setup();
      await apply([valid('sums', 0, 3n), garbage('sums', 0, 4n), garbage('sums', 2, 0n)]);
      assert.deepEqual([...store.calls[0]!.offsets].sort(byTopicPartition), [
        { topic: 'sums', topicId: 'id-of-sums', partition: 0, nextOffset: 5n },
        { topic: 'sums', topicId: 'id-of-sums', partition: 2, nextOffset: 1n },
      ]);
    });

    it('hands the store every event with its partition and offset, and the group id', async () => {
      const { apply, store } = setup();
      const first = sumAccepted('a', 1n, 2n);
      const second = sumAccepted('b', -4n, 9223372036854775807n);
      await apply([record('sums', 1, 6n, encodeSumAccepted(first)), record('sums', 0, 2n, encodeSumAccepted(second))]);
      const call = store.calls[0]!;
      assert.equal(call.groupId, 'totals-group');
      assert.deepEqual(call.events, [
        { event: first, partition: 1, offset: 6n },
        { event: second, partition: 0, offset: 2n },
      ]);
      assert.deepEqual(call.rejected, []);
    });
  });

  describe('malformed records', () => {
    it('keeps a record that is not an event as rejected, with the reason, and dead-letters it before the store call', async () => {
      const { apply, store, sink, log } = setup();
      const unreadable = garbage('sums', 0, 1n);
      const unknownType = record('sums', 1, 4n, JSON.stringify({ type: 'something.else', version: 1 }), null);
      await apply([valid('sums', 0, 0n), unreadable, unknownType, valid('sums', 1, 5n)]);
      assert.deepEqual(log, ['dead letters', 'store']);
      const expected = [
        { ...unreadable, reason: 'value is not JSON' },
        { ...unknownType, reason: 'unknown event type "something.else"' },
      ];
      assert.deepEqual(sink.sent, [expected]);
      const call = store.calls[0]!;
      assert.deepEqual(call.rejected, expected.map((r) => ({ ...r, deadLettered: true })));
      assert.deepEqual(call.events.map((e) => [e.partition, e.offset]), [[0, 0n], [1, 5n]]);
    });

    it('does not call the sink when every record is an event', async () => {
      const { apply, sink, log } = setup();
      await apply([valid('sums', 0, 0n)]);
      assert.deepEqual(sink.sent, []);
      assert.deepEqual(log, ['store']);
    });

    it('goes on when the dead-letter topic does not take the records: they are kept as rejected, marked, and counted', async () => {
      const { apply, store, sink, metrics } = setup();
      sink.failure = new Error('UNKNOWN_TOPIC_OR_PARTITION');
      store.outcome = { applied: 2, duplicates: 0, acceptedAtMs: [], tooOld: [], horizon: null };
      await apply([valid('sums', 0, 0n), garbage('sums', 0, 1n), valid('sums', 0, 2n)]);
      assert.equal(store.calls.length, 1);
      const call = store.calls[0]!;
      assert.deepEqual(call.events.map((e) => e.offset), [0n, 2n]);
      assert.deepEqual(call.rejected.map((r) => [r.offset, r.reason, r.deadLettered]), [[1n, 'value is not JSON', false]]);
      assert.deepEqual(call.offsets.map((o) => o.nextOffset), [3n]);
      const { applied, rejected, deadLetterFailures } = await counters(metrics);
      assert.deepEqual({ applied, rejected, deadLetterFailures }, { applied: 2, rejected: 1, deadLetterFailures: 1 });
    });

    it('still hands rejected records to the store when there is no sink', async () => {
      const { apply, store } = setup({ withSink: false });
      await apply([garbage('sums', 0, 1n)]);
      assert.deepEqual(store.calls[0]!.rejected.map((r) => [r.reason, r.deadLettered]), [['value is not JSON', null]]);
      assert.deepEqual(store.calls[0]!.events, []);
    });
  });

  describe('events of a newer version', () => {
    it('stops their partition at the first one: nothing from there is applied, rejected or committed past; other partitions go on', async () => {
      const { apply, store, sink } = setup();
      const result = await apply([
        valid('sums', 0, 10n),
        valid('sums', 1, 4n),
        newer('sums', 0, 11n),
        valid('sums', 0, 12n),
        garbage('sums', 0, 13n),
        newer('sums', 0, 14n),
        garbage('sums', 1, 5n),
        valid('sums', 1, 6n),
      ]);
      assert.deepEqual(result.stalled?.map(({ partition, offset, reason }) => ({ partition, offset, reason })), [
        { partition: 0, offset: 11n, reason: NEWER_EVENT_VERSION },
      ]);
      assert.match(result.stalled![0]!.detail, /event version 2 is newer than this release reads \(1\)/);
      const call = store.calls[0]!;
      assert.deepEqual(call.events.map((e) => [e.partition, e.offset]), [[0, 10n], [1, 4n], [1, 6n]]);
      assert.deepEqual(call.rejected.map((r) => [r.partition, r.offset]), [[1, 5n]]);
      assert.deepEqual(sink.sent.flat().map((r) => [r.partition, r.offset]), [[1, 5n]]);
      assert.deepEqual([...call.offsets].sort(byTopicPartition).map((o) => [o.partition, o.nextOffset]), [[0, 11n], [1, 7n]]);
    });

    it('does not call the store when the batch holds nothing before the stop', async () => {
      const { apply, store, metrics } = setup();
      const result = await apply([newer('sums', 2, 0n), valid('sums', 2, 1n)]);
      assert.deepEqual(result.stalled?.map((s) => [s.partition, s.offset]), [[2, 0n]]);
      assert.equal(store.calls.length, 0);
      assert.equal((await counters(metrics)).consumed, 2);
    });

    it('applies them once a decoder that reads them is given (a newer release)', async () => {
      const { store, metrics } = setup();
      const apply = createBatchApplier({
        store,
        groupId: 'totals-group',
        logger: pino({ level: 'silent' }),
        metrics,
        decode: (value) => {
          const json = JSON.parse(value.toString()) as Record<string, unknown>;
          return decodeSumAccepted(JSON.stringify({ ...json, version: SUM_ACCEPTED_VERSION }));
        },
      });
      const event = sumAccepted('r-newer', 2n, 3n);
      const json = JSON.parse(encodeSumAccepted(event)) as Record<string, unknown>;
      const result = await apply([record('sums', 0, 11n, JSON.stringify({ ...json, version: SUM_ACCEPTED_VERSION + 1 }))]);
      assert.deepEqual(result.stalled, []);
      assert.deepEqual(store.calls[0]!.events, [{ event, partition: 0, offset: 11n }]);
    });
  });

  describe('events PostgreSQL refuses', () => {
    it('finds the refused ones, rejects them with the database\'s reason and applies the rest with every offset', async () => {
      const { apply, store, sink, metrics, log } = setup();
      const refused = record('sums', 1, 3n, encodeSumAccepted(sumAccepted('refused', 1n, 1n)));
      store.refuses.set('refused', databaseError('23514', 'new row violates check constraint "no_refused"'));
      store.outcome = { applied: 2, duplicates: 0, acceptedAtMs: [], tooOld: [], horizon: null };
      await apply([valid('sums', 0, 0n), refused, garbage('sums', 0, 1n), valid('sums', 1, 4n)]);
      assert.deepEqual(log, ['dead letters', 'store', 'find refused', 'dead letters', 'store']);
      const retry = store.calls[1]!;
      assert.deepEqual(retry.events.map((e) => [e.partition, e.offset]), [[0, 0n], [1, 4n]]);
      assert.deepEqual(retry.rejected.map((r) => [r.partition, r.offset, r.reason, r.deadLettered]), [
        [0, 1n, 'value is not JSON', true],
        [1, 3n, 'PostgreSQL refused it: new row violates check constraint "no_refused" (SQLSTATE 23514)', true],
      ]);
      assert.deepEqual([...retry.offsets].sort(byTopicPartition).map((o) => [o.partition, o.nextOffset]), [[0, 2n], [1, 5n]]);
      assert.deepEqual(sink.sent[1]!.map((r) => [r.offset, r.key, r.value]), [[3n, refused.key, refused.value]]);
      const { applied, rejected } = await counters(metrics);
      assert.deepEqual({ applied, rejected }, { applied: 2, rejected: 2 });
    });

    for (const [label, failure] of [
      ['a lost connection', Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' })],
      ['a serialization failure', databaseError('40001', 'could not serialize access')],
      ['a statement timeout', databaseError('57014', 'canceling statement due to statement timeout')],
      ['a missing table', databaseError('42P01', 'relation "totals.total" does not exist')],
    ] as const) {
      it(`fails the batch on ${label}, to be retried as it is, rejecting nothing`, async () => {
        const { apply, store, metrics } = setup();
        store.failure = failure;
        await assert.rejects(apply([valid('sums', 0, 0n), valid('sums', 0, 1n)]), failure);
        assert.equal(store.probes, 0);
        assert.equal((await counters(metrics)).rejected, 0);
      });
    }

    it('fails the batch when no single event is to blame for a data error', async () => {
      const { apply, store } = setup();
      store.failure = databaseError('22P05', 'unsupported Unicode escape sequence');
      await assert.rejects(apply([valid('sums', 0, 0n)]), store.failure);
      assert.equal(store.probes, 1);
      assert.equal(store.calls.length, 1);
    });
  });

  describe('the store', () => {
    it('propagates a store failure and counts nothing as applied or rejected', async () => {
      const { apply, store, metrics } = setup();
      store.failure = new Error('serialization failure');
      store.outcome = { applied: 1, duplicates: 0, acceptedAtMs: [Date.now()], tooOld: [], horizon: null };
      await assert.rejects(apply([valid('sums', 0, 0n), garbage('sums', 0, 1n)]), store.failure);
      const { applied, duplicates, rejected } = await counters(metrics);
      assert.deepEqual({ applied, duplicates, rejected }, { applied: 0, duplicates: 0, rejected: 0 });
      assert.equal((await metrics.endToEndSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0, 0);
    });
  });

  describe('metrics', () => {
    it('counts consumed records, applied events, duplicates and rejected records, and observes each applied event\'s latency', async () => {
      const { apply, store, metrics } = setup();
      const now = Date.now();
      store.outcome = { applied: 2, duplicates: 1, acceptedAtMs: [now - 1_000, now - 2_000], tooOld: [], horizon: null };
      await apply([valid('sums', 0, 0n), valid('sums', 0, 1n), valid('sums', 0, 2n), garbage('sums', 0, 3n)]);
      assert.deepEqual(await counters(metrics), { consumed: 4, applied: 2, duplicates: 1, rejected: 1, deadLetterFailures: 0 });
      const latency = (await metrics.endToEndSeconds.get()).values;
      const count = latency.find((v) => v.metricName === 'summa_end_to_end_latency_seconds_count')?.value;
      const sum = latency.find((v) => v.metricName === 'summa_end_to_end_latency_seconds_sum')?.value ?? 0;
      assert.equal(count, 2);
      assert.ok(sum >= 3 && sum < 4, `latency sum ${sum}s`);

      store.outcome = { applied: 0, duplicates: 1, acceptedAtMs: [], tooOld: [], horizon: null };
      await apply([valid('sums', 0, 0n)]);
      assert.deepEqual(await counters(metrics), { consumed: 5, applied: 2, duplicates: 2, rejected: 1, deadLetterFailures: 0 });
    });
  });
});
