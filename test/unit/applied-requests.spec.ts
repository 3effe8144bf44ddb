import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { IncomingRecord } from '../../src/platform/kafka/records.ts';
import { AppliedRequests, announceApplied } from '../../src/totals/applied-requests.ts';

const settled = async (promise: Promise<void>) => {
  let done = false;
  void promise.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
};

function record(key: string | null, offset: bigint): IncomingRecord {
  return { topic: 't', topicId: 'id', partition: 0, offset, key, value: Buffer.alloc(0), headers: {}, timestamp: 0n };
}

describe('AppliedRequests', () => {
  it('wakes every watch of an applied request id, and only those', async () => {
    const requests = new AppliedRequests();
    const [a1, a2, b] = [requests.watch('a'), requests.watch('a'), requests.watch('b')];
    requests.applied(['a', 'c']);
    assert.equal(await settled(a1.applied), true);
    assert.equal(await settled(a2.applied), true);
    assert.equal(await settled(b.applied), false);
    for (const watch of [a1, a2, b]) watch.stop();
    assert.equal(requests.size, 0);
  });

  it('forgets a stopped watch, leaving the others of that id', async () => {
    const requests = new AppliedRequests();
    const [gone, kept] = [requests.watch('a'), requests.watch('a')];
    gone.stop();
    requests.applied(['a']);
    assert.equal(await settled(gone.applied), false);
    assert.equal(await settled(kept.applied), true);
    kept.stop();
    assert.equal(requests.size, 0);
  });

  it('announces the keys of a batch once its apply resolved, and nothing when it failed', async () => {
    const requests = new AppliedRequests();
    let commit!: () => void;
    let fail = false;
    const onBatch = announceApplied(requests, () =>
      fail ? Promise.reject(new Error('database down')) : new Promise((resolve) => (commit = () => resolve({}))),
    );
    const watch = requests.watch('r-2');
    const applying = onBatch([record('r-1', 0n), record(null, 1n), record('r-2', 2n)]);
    assert.equal(await settled(watch.applied), false, 'not before the apply committed');
    commit();
    await applying;
    assert.equal(await settled(watch.applied), true);

    fail = true;
    const next = requests.watch('r-3');
    await assert.rejects(onBatch([record('r-3', 3n)]), /database down/);
    assert.equal(await settled(next.applied), false);
  });
});
