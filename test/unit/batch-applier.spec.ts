import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry, type Counter } from 'prom-client';
import { encodeSumAccepted } from '../../src/events/sum-accepted.ts';
import { createBatchApplier } from '../../src/totals/batch-applier.ts';
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

/** Records what the applier hands the store and the dead-letter sink, in order, in one log. */
function setup(options: { withSink?: boolean } = {}) {
  const log: string[] = [];
  const store = {
    calls: [] as ApplyCall[],
    outcome: { applied: 0, duplicates: 0, acceptedAtMs: [] } as BatchOutcome,
    failure: undefined as Error | undefined,
    async applyBatch(groupId: string, events: EventAtOffset[], rejected: RejectedRecord[], offsets: PartitionOffset[]): Promise<BatchOutcome> {
      log.push('store');
      store.calls.push({ groupId, events, rejected, offsets });
      if (store.failure) throw store.failure;
      return store.outcome;
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
  const apply = createBatchApplier(
    store as unknown as TotalsStore,
    'totals-group',
    pino({ level: 'silent' }),
    metrics,
    options.withSink === false ? undefined : sink,
  );
  return { apply, store, sink, metrics, log };
}

function sumAccepted(requestId: string, num1: bigint, num2: bigint) {
  return { eventId: randomUUID(), requestId, num1, num2, sum: num1 + num2, acceptedAt: new Date('2025-01-02T03:04:05.678Z') };
}

function record(topic: string, partition: number, offset: bigint, value: Buffer | string, key: string | null = 'key'): IncomingRecord {
  return { topic, partition, offset, key, value: Buffer.from(value), headers: { 'summa-event-id': 'x' }, timestamp: 0n };
}

const valid = (topic: string, partition: number, offset: bigint) =>
  record(topic, partition, offset, encodeSumAccepted(sumAccepted(`r-${topic}-${partition}-${offset}`, offset, 1n)));
const garbage = (topic: string, partition: number, offset: bigint) => record(topic, partition, offset, Buffer.from([0xff, 0xfe, 0x00, 0x7b]));

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
        { topic: 'other', partition: 0, nextOffset: 11n },
        { topic: 'sums', partition: 0, nextOffset: 8n },
        { topic: 'sums', partition: 1, nextOffset: 3n },
      ]);
    });

    it('moves past rejected records too, so they do not block their partition', async () => {
      const { apply, store } = setup();
      await apply([valid('sums', 0, 3n), garbage('sums', 0, 4n), garbage('sums', 2, 0n)]);
      assert.deepEqual([...store.calls[0]!.offsets].sort(byTopicPartition), [
        { topic: 'sums', partition: 0, nextOffset: 5n },
        { topic: 'sums', partition: 2, nextOffset: 1n },
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
      assert.deepEqual(call.rejected, expected);
      assert.deepEqual(call.events.map((e) => [e.partition, e.offset]), [[0, 0n], [1, 5n]]);
    });

    it('does not call the sink when every record is an event', async () => {
      const { apply, sink, log } = setup();
      await apply([valid('sums', 0, 0n)]);
      assert.deepEqual(sink.sent, []);
      assert.deepEqual(log, ['store']);
    });

    it('fails the batch without calling the store when the dead-letter sink fails', async () => {
      const { apply, store, sink, metrics } = setup();
      sink.failure = new Error('broker down');
      await assert.rejects(apply([valid('sums', 0, 0n), garbage('sums', 0, 1n)]), sink.failure);
      assert.equal(store.calls.length, 0);
      const { applied, rejected } = await counters(metrics);
      assert.deepEqual({ applied, rejected }, { applied: 0, rejected: 0 });
    });

    it('still hands rejected records to the store when there is no sink', async () => {
      const { apply, store } = setup({ withSink: false });
      await apply([garbage('sums', 0, 1n)]);
      assert.deepEqual(store.calls[0]!.rejected.map((r) => r.reason), ['value is not JSON']);
      assert.deepEqual(store.calls[0]!.events, []);
    });
  });

  describe('the store', () => {
    it('propagates a store failure and counts nothing as applied or rejected', async () => {
      const { apply, store, metrics } = setup();
      store.failure = new Error('serialization failure');
      store.outcome = { applied: 1, duplicates: 0, acceptedAtMs: [Date.now()] };
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
      store.outcome = { applied: 2, duplicates: 1, acceptedAtMs: [now - 1_000, now - 2_000] };
      await apply([valid('sums', 0, 0n), valid('sums', 0, 1n), valid('sums', 0, 2n), garbage('sums', 0, 3n)]);
      assert.deepEqual(await counters(metrics), { consumed: 4, applied: 2, duplicates: 1, rejected: 1 });
      const latency = (await metrics.endToEndSeconds.get()).values;
      const count = latency.find((v) => v.metricName === 'summa_end_to_end_latency_seconds_count')?.value;
      const sum = latency.find((v) => v.metricName === 'summa_end_to_end_latency_seconds_sum')?.value ?? 0;
      assert.equal(count, 2);
      assert.ok(sum >= 3 && sum < 4, `latency sum ${sum}s`);

      store.outcome = { applied: 0, duplicates: 1, acceptedAtMs: [] };
      await apply([valid('sums', 0, 0n)]);
      assert.deepEqual(await counters(metrics), { consumed: 5, applied: 2, duplicates: 2, rejected: 1 });
    });
  });
});
