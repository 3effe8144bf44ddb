import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Queryable } from '../../src/platform/db/replication-lag.ts';
import { SummaError } from '../../src/platform/errors.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { AppliedRequests } from '../../src/totals/applied-requests.ts';
import { TotalReader } from '../../src/totals/total-reads.ts';

const logger = createLogger('total-reads-test', { LOG_LEVEL: 'silent' });

/** A database that answers the total statement from `state`, or fails while `down`. */
function fakeDatabase(state: { total: string; count: number; applied: Set<string>; down?: boolean; lagSeconds?: number }) {
  const calls: unknown[][] = [];
  const db: Queryable = {
    async query<R>(_text: string, values?: unknown[]) {
      calls.push(values ?? []);
      if (state.down) throw new Error('connect ECONNREFUSED');
      const requestId = values?.[0] as string | null;
      const row = {
        total: state.total,
        count: String(state.count),
        applied: requestId !== null && state.applied.has(requestId),
        in_recovery: true,
        streaming: true,
        lag_bytes: state.lagSeconds ? 100 : 0,
        replay_age_seconds: state.lagSeconds ?? 0,
      };
      return { rows: [row as R] };
    },
  };
  return { db, calls };
}

/** A clock that moves only when the reader sleeps. */
function fakeClock() {
  let now = 0;
  const sleeps: number[] = [];
  return {
    now: () => now,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      now += ms;
    },
    sleeps,
  };
}

describe('TotalReader', () => {
  it('reads the replica, with its lag, and the primary for consistency=strong', async () => {
    const primary = fakeDatabase({ total: '10', count: 2, applied: new Set() });
    const replica = fakeDatabase({ total: '7', count: 1, applied: new Set(), lagSeconds: 0.25 });
    const reader = new TotalReader({ primary: primary.db, replica: replica.db, logger });
    const eventual = await reader.read({ consistency: 'eventual', after: undefined });
    assert.deepEqual(eventual.snapshot, { total: '7', count: 1 });
    assert.equal(eventual.source, 'replica');
    assert.equal(eventual.replicaLag?.seconds, 0.25);
    const strong = await reader.read({ consistency: 'strong', after: undefined });
    assert.deepEqual({ ...strong.snapshot, source: strong.source }, { total: '10', count: 2, source: 'primary' });
  });

  it('reads the primary without a replica', async () => {
    const primary = fakeDatabase({ total: '10', count: 2, applied: new Set() });
    const read = await new TotalReader({ primary: primary.db, replica: undefined, logger }).read({ consistency: 'eventual', after: undefined });
    assert.equal(read.source, 'primary');
  });

  it('falls back to the primary while the replica fails, and tries it again a second later', async () => {
    const clock = fakeClock();
    const primary = fakeDatabase({ total: '10', count: 2, applied: new Set() });
    const replicaState = { total: '7', count: 1, applied: new Set<string>(), down: true };
    const replica = fakeDatabase(replicaState);
    const seen: [string, boolean][] = [];
    const reader = new TotalReader({ primary: primary.db, replica: replica.db, logger, now: clock.now, sleep: clock.sleep, onRead: (r, fallback) => seen.push([r.source, fallback]) });
    assert.equal((await reader.read({ consistency: 'eventual', after: undefined })).source, 'primary');
    await reader.read({ consistency: 'eventual', after: undefined });
    assert.equal(replica.calls.length, 1, 'a replica that just failed is not asked again at once');
    replicaState.down = false;
    await clock.sleep(1_000);
    assert.equal((await reader.read({ consistency: 'eventual', after: undefined })).source, 'replica');
    assert.deepEqual(seen, [['primary', true], ['primary', true], ['replica', false]]);
  });

  it('waits for a request id, polling with short backoff, and answers with the total that holds it', async () => {
    const clock = fakeClock();
    const replicaState = { total: '7', count: 1, applied: new Set<string>() };
    const replica = fakeDatabase(replicaState);
    let polls = 0;
    const db: Queryable = {
      query: async (text, values) => {
        if (++polls === 4) Object.assign(replicaState, { total: '12', count: 2, applied: new Set(['r-1']) });
        return replica.db.query(text, values);
      },
    };
    const reader = new TotalReader({ primary: fakeDatabase({ total: '0', count: 0, applied: new Set() }).db, replica: db, logger, ...clock });
    const read = await reader.read({ consistency: 'eventual', after: { requestId: 'r-1', timeoutMs: 5_000 } });
    assert.deepEqual(read.snapshot, { total: '12', count: 2 });
    assert.deepEqual(clock.sleeps, [10, 20, 40]);
  });

  it('times out with DEADLINE_EXCEEDED naming the request id', async () => {
    const clock = fakeClock();
    const reader = new TotalReader({ primary: fakeDatabase({ total: '0', count: 0, applied: new Set() }).db, replica: undefined, logger, ...clock });
    await assert.rejects(reader.read({ consistency: 'eventual', after: { requestId: 'never', timeoutMs: 500 } }), (error: unknown) => {
      assert.ok(error instanceof SummaError);
      assert.equal(error.code, 'DEADLINE_EXCEEDED');
      assert.equal(error.requestId, 'never');
      assert.match(error.message, /"never" was not in the total within 500 ms/);
      return true;
    });
    assert.equal(clock.now(), 500, 'it waits the whole timeout and no longer');
  });

  it('stops waiting when the caller hangs up', async () => {
    const clock = fakeClock();
    const hungUp = new AbortController();
    const primary = fakeDatabase({ total: '0', count: 0, applied: new Set() });
    const reader = new TotalReader({ primary: primary.db, replica: undefined, logger, now: clock.now, sleep: async (ms) => {
      await clock.sleep(ms);
      if (clock.sleeps.length === 2) hungUp.abort();
    } });
    await assert.rejects(reader.read({ consistency: 'eventual', after: { requestId: 'r', timeoutMs: 30_000 } }, hungUp.signal), /the caller stopped waiting/);
    assert.equal(primary.calls.length, 3);
  });

  it('ends a wait as soon as this instance applied the request, not at its next poll', async () => {
    const state = { total: '0', count: 0, applied: new Set<string>() };
    const primary = fakeDatabase(state);
    const appliedRequests = new AppliedRequests();
    // A pause that only an abort ends: the poll alone would never answer.
    const pauses: number[] = [];
    const sleep = (ms: number, signal?: AbortSignal) =>
      new Promise<void>((resolve) => {
        pauses.push(ms);
        signal?.addEventListener('abort', () => resolve(), { once: true });
      });
    const reader = new TotalReader({ primary: primary.db, replica: undefined, logger, sleep, appliedRequests });
    let answered = false;
    const read = reader.read({ consistency: 'strong', after: { requestId: 'r-1', timeoutMs: 5_000 } }).finally(() => (answered = true));
    while (pauses.length === 0) await new Promise((resolve) => setImmediate(resolve));
    Object.assign(state, { total: '3', count: 1, applied: new Set(['r-1']) });
    appliedRequests.applied(['other', 'r-1']);
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(answered, 'the read answered without waiting out its pause');
    assert.deepEqual((await read).snapshot, { total: '3', count: 1 });
    assert.equal(primary.calls.length, 2);
    assert.equal(appliedRequests.size, 0, 'the watch is gone once answered');
  });

  it('is woken by an apply that commits while it reads', async () => {
    const state = { total: '0', count: 0, applied: new Set<string>() };
    const appliedRequests = new AppliedRequests();
    let reads = 0;
    const primary: Queryable = {
      async query<R extends object>(text: string, values?: unknown[]) {
        const answer = await fakeDatabase(state).db.query<R>(text, values);
        // The consumer commits just after this read took its snapshot (which does not hold r-1).
        if (++reads === 1) {
          Object.assign(state, { total: '3', count: 1, applied: new Set(['r-1']) });
          appliedRequests.applied(['r-1']);
        }
        return answer;
      },
    };
    const sleep = (_ms: number, signal?: AbortSignal) => new Promise<void>((resolve) => signal?.addEventListener('abort', () => resolve(), { once: true }));
    const reader = new TotalReader({ primary, replica: undefined, logger, sleep, appliedRequests });
    const read = await reader.read({ consistency: 'strong', after: { requestId: 'r-1', timeoutMs: 5_000 } });
    assert.deepEqual(read.snapshot, { total: '3', count: 1 });
    assert.equal(reads, 2);
  });
});
