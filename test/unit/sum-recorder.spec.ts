import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { AddCommand, AddResult } from '../../src/calculator/add-command.ts';
import { createCalculatorMetrics, type CalculatorMetrics } from '../../src/calculator/metrics.ts';
import { SumRecorder, type SumRecorderOptions } from '../../src/calculator/sum-recorder.ts';
import { decodeSumAccepted } from '../../src/events/sum-accepted.ts';
import type { Pool } from '../../src/platform/db/pool.ts';
import { SummaError, type ErrorCode } from '../../src/platform/errors.ts';

interface StoredRequest {
  num1: bigint;
  num2: bigint;
  sum: bigint;
}

/**
 * Stands in for the pool: keeps the requests table in a Map and answers the recorder's two
 * statements, the record (INSERT ... ON CONFLICT DO NOTHING, returning the accepted ids as
 * message_key) and the read of already-recorded rows. Tests script failures, hold statements in
 * flight, and read what each statement received.
 */
class FakeRequestsPool {
  readonly rows = new Map<string, StoredRequest>();
  /** Parameters of every record statement, in the order they were sent. */
  readonly records: unknown[][] = [];
  /** The ids each read statement asked for. */
  readonly reads: string[][] = [];
  /** While true, each record statement waits until the test calls release(). */
  hold = false;
  private readonly held: (() => void)[] = [];
  inFlight = 0;
  peakInFlight = 0;
  /** Returns an error to fail the record statement with (before anything is written). */
  failRecord: (requestIds: string[]) => Error | undefined = () => undefined;
  /** Fails every read statement with this error. */
  failRead: Error | undefined;
  /** Ids the record statement treats as conflicting although the read then does not find them. */
  readonly vanished = new Set<string>();

  /** Takes the statements as the recorder sends them: prepared, with their values. */
  async query({ text: sql, values: params }: { text: string; values: unknown[] }): Promise<{ rows: unknown[] }> {
    if (/\bINSERT INTO\b/.test(sql)) return this.record(params);
    if (/request_id = ANY\(\$1/.test(sql)) return this.read(params);
    throw new Error(`unexpected statement: ${sql}`);
  }

  get heldCount(): number {
    return this.held.length;
  }

  /** Lets the oldest held statement go on. */
  release(): void {
    const next = this.held.shift();
    assert.ok(next, 'no statement is held');
    next();
  }

  /** Ids of each record statement. */
  get recordedIds(): string[][] {
    return this.records.map((params) => params[0] as string[]);
  }

  private async record(params: unknown[]): Promise<{ rows: { message_key: string }[] }> {
    this.records.push(params);
    this.inFlight += 1;
    this.peakInFlight = Math.max(this.peakInFlight, this.inFlight);
    try {
      if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
      const [ids, num1, num2, sum] = params as [string[], string[], string[], string[]];
      assert.equal(new Set(ids).size, ids.length, 'one statement never carries an id twice');
      const failure = this.failRecord(ids);
      if (failure) throw failure;
      const accepted: { message_key: string }[] = [];
      ids.forEach((id, index) => {
        if (this.rows.has(id) || this.vanished.has(id)) return;
        this.rows.set(id, { num1: BigInt(num1[index]!), num2: BigInt(num2[index]!), sum: BigInt(sum[index]!) });
        accepted.push({ message_key: id });
      });
      return { rows: accepted };
    } finally {
      this.inFlight -= 1;
    }
  }

  private async read(params: unknown[]): Promise<{ rows: unknown[] }> {
    const ids = params[0] as string[];
    this.reads.push(ids);
    if (this.failRead) throw this.failRead;
    const rows = ids.flatMap((id) => {
      const row = this.rows.get(id);
      return row ? [{ request_id: id, num1: row.num1.toString(), num2: row.num2.toString(), sum: row.sum.toString() }] : [];
    });
    return { rows };
  }
}

const silentLogger = pino({ level: 'silent' });

function setup(options: Partial<SumRecorderOptions> = {}) {
  const pool = new FakeRequestsPool();
  const metrics = createCalculatorMetrics(new Registry());
  /** How many statements reported new outbox events as committed, so the relays be woken. */
  const wakeups = { count: 0 };
  const recorder = new SumRecorder(
    pool as unknown as Pool,
    { topic: 'sums', maxBatchSize: 100, maxConcurrentWrites: 4, maxQueued: 1_000, ...options },
    silentLogger,
    metrics,
    () => (wakeups.count += 1),
  );
  return { pool, metrics, recorder, wakeups };
}

function add(requestId: string, num1: number, num2: number): AddCommand {
  return { requestId, num1: BigInt(num1), num2: BigInt(num2), sum: BigInt(num1) + BigInt(num2) };
}

const accepted = (requestId: string, sum: bigint): AddResult => ({ requestId, sum, replayed: false });
const replayed = (requestId: string, sum: bigint): AddResult => ({ requestId, sum, replayed: true });

/** The value of a settled result, or the code of its SummaError. */
function outcomeOf(result: PromiseSettledResult<AddResult>): AddResult | ErrorCode {
  if (result.status === 'fulfilled') return result.value;
  assert.ok(result.reason instanceof SummaError, `expected a SummaError, got ${String(result.reason)}`);
  return result.reason.code;
}

async function outcomes(promises: Promise<AddResult>[]): Promise<(AddResult | ErrorCode)[]> {
  return (await Promise.allSettled(promises)).map(outcomeOf);
}

/** A promise whose outcome can be looked at synchronously, so no rejection goes unhandled. */
function track(promise: Promise<AddResult>) {
  const tracked = { settled: false, result: undefined as PromiseSettledResult<AddResult> | undefined };
  void promise.then(
    (value) => Object.assign(tracked, { settled: true, result: { status: 'fulfilled', value } }),
    (reason: unknown) => Object.assign(tracked, { settled: true, result: { status: 'rejected', reason } }),
  );
  return tracked;
}

/** Lets the event loop turn until `condition` holds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let turn = 0; turn < 1_000; turn += 1) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const turns = async (count: number) => {
  for (let turn = 0; turn < count; turn += 1) await new Promise((resolve) => setImmediate(resolve));
};

async function requestCounts(metrics: CalculatorMetrics): Promise<Record<string, number>> {
  const { values } = await metrics.requests.get();
  return Object.fromEntries(values.map((value) => [String(value.labels.outcome), value.value]));
}

async function batchSizes(metrics: CalculatorMetrics): Promise<{ count: number; sum: number }> {
  const { values } = await metrics.batchSize.get();
  const value = (name: string) => values.find((v) => v.metricName === name)?.value ?? 0;
  return { count: value('summa_calculator_batch_size_count'), sum: value('summa_calculator_batch_size_sum') };
}

describe('SumRecorder', () => {
  describe('grouping', () => {
    it('writes the requests read in one event-loop turn with one statement', async () => {
      const { pool, metrics, recorder } = setup();
      const results = await outcomes([recorder.record(add('a', 1, 2)), recorder.record(add('b', 3, 4)), recorder.record(add('c', 5, 6))]);
      assert.deepEqual(results, [accepted('a', 3n), accepted('b', 7n), accepted('c', 11n)]);
      assert.deepEqual(pool.recordedIds, [['a', 'b', 'c']]);
      assert.deepEqual(await batchSizes(metrics), { count: 1, sum: 3 });
      assert.deepEqual(await requestCounts(metrics), { accepted: 3 });
    });

    it('writes a request of a later turn with a statement of its own', async () => {
      const { pool, recorder } = setup();
      assert.deepEqual(await recorder.record(add('a', 1, 1)), accepted('a', 2n));
      assert.deepEqual(await recorder.record(add('b', 2, 2)), accepted('b', 4n));
      assert.deepEqual(pool.recordedIds, [['a'], ['b']]);
    });

    it('gathers the requests that arrive while a write is in flight into the next statement', async () => {
      const { pool, recorder } = setup({ maxConcurrentWrites: 1 });
      pool.hold = true;
      const first = track(recorder.record(add('a', 1, 1)));
      await until(() => pool.heldCount === 1, 'the first statement');
      const later = [track(recorder.record(add('b', 1, 2)))];
      await turns(2);
      later.push(track(recorder.record(add('c', 1, 3))), track(recorder.record(add('d', 1, 4))));
      await turns(2);
      assert.deepEqual(pool.recordedIds, [['a']], 'nothing else is written while the first statement is in flight');
      pool.release();
      await until(() => pool.heldCount === 1, 'the second statement');
      assert.deepEqual(pool.recordedIds, [['a'], ['b', 'c', 'd']]);
      pool.release();
      await until(() => later.every((t) => t.settled), 'the answers');
      assert.deepEqual([first, ...later].map((t) => outcomeOf(t.result!)), [
        accepted('a', 2n),
        accepted('b', 3n),
        accepted('c', 4n),
        accepted('d', 5n),
      ]);
    });

    it('sends each request id once, with its numbers, sum, a fresh event id, its event and the topic', async () => {
      const { pool, recorder } = setup();
      await outcomes([recorder.record(add('a', 1, 2)), recorder.record(add('b', -5, 3))]);
      const [ids, num1, num2, sum, eventIds, payloads, topic] = pool.records[0] as [
        string[], string[], string[], string[], string[], string[], string,
      ];
      assert.equal(pool.records[0]!.length, 7, 'an untraced batch sends no headers parameter, and no timestamps: the database stamps the rows');
      assert.deepEqual([ids, num1, num2, sum, topic], [['a', 'b'], ['1', '-5'], ['2', '3'], ['3', '-2'], 'sums']);
      assert.equal(new Set(eventIds).size, 2);
      ids.forEach((requestId, index) => {
        const event = decodeSumAccepted(payloads[index]!);
        assert.equal(event.eventId, eventIds[index]);
        assert.deepEqual([event.requestId, event.num1, event.num2, event.sum], [requestId, BigInt(num1[index]!), BigInt(num2[index]!), BigInt(sum[index]!)]);
      });
    });

    it('writes the requests in sorted request id order, whatever order they came in', async () => {
      const { pool, recorder } = setup();
      const results = await outcomes([
        recorder.record(add('c', 3, 0)),
        recorder.record(add('a', 1, 0)),
        recorder.record(add('d', 4, 0)),
        recorder.record(add('b', 2, 0)),
      ]);
      assert.deepEqual(results, [accepted('c', 3n), accepted('a', 1n), accepted('d', 4n), accepted('b', 2n)]);
      const [ids, num1] = pool.records[0] as [string[], string[]];
      assert.deepEqual(ids, ['a', 'b', 'c', 'd']);
      assert.deepEqual(num1, ['1', '2', '3', '4'], 'the other arrays follow the same order');
    });
  });

  describe('one request id several times in a batch', () => {
    it('writes the first one only; the others with the same numbers replay its answer', async () => {
      const { pool, metrics, recorder } = setup();
      const results = await outcomes([
        recorder.record(add('b', 7, 0)),
        recorder.record(add('a', 1, 2)),
        recorder.record(add('a', 1, 2)),
        recorder.record(add('a', 1, 2)),
      ]);
      assert.deepEqual(results, [accepted('b', 7n), accepted('a', 3n), replayed('a', 3n), replayed('a', 3n)]);
      assert.deepEqual(pool.recordedIds, [['a', 'b']]);
      assert.deepEqual(pool.reads, [], 'nothing needs reading back when every written id is new');
      assert.deepEqual(await requestCounts(metrics), { accepted: 2, replayed: 2 });
    });

    it('refuses other numbers under the first one\'s id with ALREADY_EXISTS', async () => {
      const { pool, metrics, recorder } = setup();
      const results = await outcomes([
        recorder.record(add('a', 1, 2)),
        recorder.record(add('a', 2, 1)), // the same sum from other numbers is still a conflict
        recorder.record(add('a', 5, 5)),
      ]);
      assert.deepEqual(results, [accepted('a', 3n), 'ALREADY_EXISTS', 'ALREADY_EXISTS']);
      assert.deepEqual(pool.records[0]!.slice(0, 3), [['a'], ['1'], ['2']], 'only the first one is written');
      assert.deepEqual(await requestCounts(metrics), { accepted: 1, conflict: 2 });
    });

    it('replays every copy, the first one too, when the id was recorded earlier', async () => {
      const { pool, metrics, recorder } = setup();
      pool.rows.set('a', { num1: 1n, num2: 2n, sum: 3n });
      const results = await outcomes([recorder.record(add('a', 1, 2)), recorder.record(add('a', 9, 9)), recorder.record(add('a', 1, 2))]);
      assert.deepEqual(results, [replayed('a', 3n), 'ALREADY_EXISTS', replayed('a', 3n)]);
      assert.deepEqual(await requestCounts(metrics), { replayed: 2, conflict: 1 });
    });
  });

  describe('an id recorded earlier', () => {
    it('replays with the recorded sum, marked replayed', async () => {
      const { pool, recorder } = setup();
      pool.rows.set('x', { num1: 2n, num2: 3n, sum: 5n });
      // A command whose sum differs from the stored one shows which sum is answered.
      const result = await recorder.record({ requestId: 'x', num1: 2n, num2: 3n, sum: 99n });
      assert.deepEqual(result, replayed('x', 5n));
    });

    it('reads back only the ids that were not newly accepted, with a second statement', async () => {
      const { pool, metrics, recorder } = setup();
      pool.rows.set('x', { num1: 2n, num2: 3n, sum: 5n });
      pool.rows.set('y', { num1: 1n, num2: 1n, sum: 2n });
      const results = await outcomes([recorder.record(add('y', 1, 1)), recorder.record(add('n', 4, 4)), recorder.record(add('x', 2, 3))]);
      assert.deepEqual(results, [replayed('y', 2n), accepted('n', 8n), replayed('x', 5n)]);
      assert.deepEqual(pool.recordedIds, [['n', 'x', 'y']]);
      assert.deepEqual(pool.reads, [['x', 'y']]);
      assert.deepEqual(await requestCounts(metrics), { accepted: 1, replayed: 2 });
    });

    it('refuses other numbers under a recorded id with ALREADY_EXISTS, and writes nothing new', async () => {
      const { pool, metrics, recorder } = setup();
      pool.rows.set('x', { num1: 2n, num2: 3n, sum: 5n });
      assert.deepEqual(await outcomes([recorder.record(add('x', 3, 2))]), ['ALREADY_EXISTS']);
      assert.deepEqual(pool.rows.get('x'), { num1: 2n, num2: 3n, sum: 5n });
      assert.deepEqual(await requestCounts(metrics), { conflict: 1 });
    });
  });

  describe('limits', () => {
    it('refuses requests beyond maxQueued with RESOURCE_EXHAUSTED and never writes them', async () => {
      const { pool, recorder } = setup({ maxQueued: 2 });
      const results = await outcomes([recorder.record(add('a', 1, 0)), recorder.record(add('b', 2, 0)), recorder.record(add('c', 3, 0))]);
      assert.deepEqual(results, [accepted('a', 1n), accepted('b', 2n), 'RESOURCE_EXHAUSTED']);
      assert.deepEqual(pool.recordedIds, [['a', 'b']]);
      assert.deepEqual(await recorder.record(add('c', 3, 0)), accepted('c', 3n), 'a taken queue has room again');
    });

    it('counts only waiting requests against maxQueued, not those being written', async () => {
      const { pool, recorder } = setup({ maxQueued: 1, maxConcurrentWrites: 1 });
      pool.hold = true;
      const first = track(recorder.record(add('a', 1, 0)));
      await until(() => pool.heldCount === 1, 'the first statement');
      const second = track(recorder.record(add('b', 2, 0)));
      const third = track(recorder.record(add('c', 3, 0)));
      await turns(1);
      assert.equal(outcomeOf(third.result!), 'RESOURCE_EXHAUSTED');
      pool.hold = false;
      pool.release();
      await until(() => second.settled, 'the second answer');
      assert.deepEqual([outcomeOf(first.result!), outcomeOf(second.result!)], [accepted('a', 1n), accepted('b', 2n)]);
    });

    it('puts at most maxBatchSize requests in one statement', async () => {
      const { pool, metrics, recorder } = setup({ maxBatchSize: 2 });
      const ids = ['a', 'b', 'c', 'd', 'e'];
      const results = await outcomes(ids.map((id) => recorder.record(add(id, 1, 0))));
      assert.deepEqual(results, ids.map((id) => accepted(id, 1n)));
      assert.deepEqual(pool.recordedIds, [['a', 'b'], ['c', 'd'], ['e']]);
      assert.deepEqual(await batchSizes(metrics), { count: 3, sum: 5 });
    });

    it('keeps at most maxConcurrentWrites statements in flight; the next starts when one ends', async () => {
      const { pool, recorder } = setup({ maxBatchSize: 1, maxConcurrentWrites: 2 });
      pool.hold = true;
      const ids = ['a', 'b', 'c', 'd', 'e'];
      const answers = ids.map((id) => track(recorder.record(add(id, 1, 1))));
      await until(() => pool.heldCount === 2, 'two statements');
      await turns(5);
      assert.deepEqual(pool.recordedIds, [['a'], ['b']]);
      pool.release();
      await until(() => pool.recordedIds.length === 3, 'a third statement');
      assert.equal(pool.inFlight, 2);
      pool.hold = false;
      while (pool.heldCount > 0) pool.release();
      await until(() => answers.every((answer) => answer.settled), 'every answer');
      assert.deepEqual(answers.map((answer) => outcomeOf(answer.result!)), ids.map((id) => accepted(id, 2n)));
      assert.equal(pool.peakInFlight, 2);
      assert.deepEqual(pool.recordedIds, ids.map((id) => [id]));
    });
  });

  describe('failures', () => {
    it('answers every request of a batch UNAVAILABLE when its statement fails, with the database error as cause', async () => {
      const { pool, metrics, recorder } = setup();
      const down = new Error('connection refused');
      pool.failRecord = () => down;
      const settled = await Promise.allSettled([recorder.record(add('a', 1, 0)), recorder.record(add('b', 2, 0))]);
      for (const result of settled) {
        assert.equal(outcomeOf(result), 'UNAVAILABLE');
        assert.equal(((result as PromiseRejectedResult).reason as SummaError).cause, down);
      }
      assert.deepEqual(await requestCounts(metrics), {});
      pool.failRecord = () => undefined;
      assert.deepEqual(await recorder.record(add('a', 1, 0)), accepted('a', 1n), 'the next batch is written again');
    });

    it('settles each request of a batch on its own when one row fails the statement: the neighbours are written', async () => {
      const { pool, recorder } = setup();
      pool.failRecord = (ids) => (ids.includes('poison') ? Object.assign(new Error('invalid input for one row'), { code: '22021' }) : undefined);
      const settled = await Promise.allSettled([recorder.record(add('a', 1, 0)), recorder.record(add('poison', 2, 0)), recorder.record(add('b', 3, 0))]);
      assert.deepEqual(settled.map(outcomeOf), [accepted('a', 1n), 'INVALID_ARGUMENT', accepted('b', 3n)]);
      assert.equal(((settled[1] as PromiseRejectedResult).reason as SummaError).requestId, 'poison');
      assert.deepEqual([...pool.rows.keys()].sort(), ['a', 'b']);
    });

    it('answers the newly accepted requests when the read after a committed insert fails; only the others are unknown', async () => {
      const { pool, metrics, recorder } = setup();
      pool.rows.set('x', { num1: 1n, num2: 1n, sum: 2n });
      pool.failRead = new Error('connection lost');
      const settled = await Promise.allSettled([recorder.record(add('n', 4, 4)), recorder.record(add('x', 1, 1))]);
      assert.deepEqual(settled.map(outcomeOf), [accepted('n', 8n), 'UNAVAILABLE']);
      const unknown = (settled[1] as PromiseRejectedResult).reason as SummaError;
      assert.equal(unknown.requestId, 'x');
      assert.match(unknown.message, /retry with the same request id/);
      assert.deepEqual(await requestCounts(metrics), { accepted: 1 });
      pool.failRead = undefined;
      assert.deepEqual(await recorder.record(add('x', 1, 1)), replayed('x', 2n), 'a retry with the same id gets the recorded answer');
    });

    it('fails only the request whose conflicting row is missing from the read', async () => {
      const { pool, recorder } = setup();
      pool.rows.set('x', { num1: 1n, num2: 1n, sum: 2n });
      pool.vanished.add('ghost');
      const settled = await Promise.allSettled([
        recorder.record(add('n', 4, 4)),
        recorder.record(add('ghost', 1, 0)),
        recorder.record(add('x', 1, 1)),
      ]);
      assert.deepEqual(settled.map(outcomeOf), [accepted('n', 8n), 'UNAVAILABLE', replayed('x', 2n)]);
      assert.equal(((settled[1] as PromiseRejectedResult).reason as SummaError).requestId, 'ghost');
      assert.deepEqual(pool.reads, [['ghost', 'x']]);
    });

    it('names the request id in every error it answers, so a caller without an id of its own can retry safely', async () => {
      const { pool, recorder } = setup();
      pool.failRecord = () => new Error('connection terminated');
      const settled = await Promise.allSettled([recorder.record(add('server-assigned-1', 1, 0)), recorder.record(add('server-assigned-2', 1, 0))]);
      for (const [index, result] of settled.entries()) {
        const error = (result as PromiseRejectedResult).reason as SummaError;
        assert.equal(error.code, 'UNAVAILABLE');
        assert.equal(error.requestId, `server-assigned-${index + 1}`);
        assert.match(error.message, new RegExp(`server-assigned-${index + 1}`));
      }
    });
  });

  describe('waking the relays', () => {
    it('reports each statement that committed new events, once it committed, and no statement that only replayed or failed', async () => {
      const { pool, recorder, wakeups } = setup();
      pool.hold = true;
      const first = track(recorder.record(add('a', 1, 0)));
      await until(() => pool.heldCount === 1, 'the statement');
      assert.equal(wakeups.count, 0, 'not before the statement committed');
      pool.release();
      await until(() => first.settled, 'the answer');
      assert.equal(wakeups.count, 1);
      pool.hold = false;
      await recorder.record(add('a', 1, 0)); // a replay commits no event
      assert.equal(wakeups.count, 1);
      pool.failRecord = () => new Error('connection refused');
      await Promise.allSettled([recorder.record(add('b', 1, 0))]);
      assert.equal(wakeups.count, 1);
    });
  });

  describe('drain()', () => {
    it('resolves at once when nothing is pending', async () => {
      const { recorder } = setup();
      await recorder.drain();
    });

    it('resolves only after the writes in flight have answered their requests', async () => {
      const { pool, recorder } = setup();
      pool.hold = true;
      const answers = [track(recorder.record(add('a', 1, 0))), track(recorder.record(add('b', 2, 0)))];
      let drained = false;
      const draining = recorder.drain().then(() => {
        drained = true;
        assert.ok(answers.every((answer) => answer.settled), 'every request is answered before drain() resolves');
      });
      await until(() => pool.heldCount === 1, 'the statement');
      await turns(5);
      assert.equal(drained, false);
      pool.release();
      await draining;
      assert.deepEqual(answers.map((answer) => outcomeOf(answer.result!)), [accepted('a', 1n), accepted('b', 2n)]);
    });

    it('waits for requests queued behind a write in flight as well', async () => {
      const { pool, recorder } = setup({ maxConcurrentWrites: 1 });
      pool.hold = true;
      const first = track(recorder.record(add('a', 1, 0)));
      await until(() => pool.heldCount === 1, 'the first statement');
      const second = track(recorder.record(add('b', 2, 0)));
      let drained = false;
      const draining = recorder.drain().then(() => {
        drained = true;
      });
      pool.release();
      await until(() => pool.heldCount === 1, 'the second statement');
      assert.equal(first.settled, true);
      await turns(5);
      assert.equal(drained, false);
      pool.release();
      await draining;
      assert.equal(second.settled, true);
    });

    it('resolves after a failed batch too', async () => {
      const { pool, recorder } = setup();
      pool.failRecord = () => new Error('down');
      const answer = track(recorder.record(add('a', 1, 0)));
      await recorder.drain();
      assert.equal(outcomeOf(answer.result!), 'UNAVAILABLE');
    });
  });
});
