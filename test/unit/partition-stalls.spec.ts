import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PartitionStalls } from '../../src/platform/kafka/partition-stalls.ts';

const stall = (partition: number, offset: bigint) => ({ partition, offset, reason: 'newer_event_version', detail: 'version 2' });

describe('PartitionStalls', () => {
  it('holds back the stalled record and every later one of its partition, nothing else', () => {
    const stalls = new PartitionStalls();
    stalls.add(stall(1, 10n));
    assert.equal(stalls.holds({ partition: 1, offset: 9n }), false);
    assert.equal(stalls.holds({ partition: 1, offset: 10n }), true);
    assert.equal(stalls.holds({ partition: 1, offset: 11n }), true);
    assert.equal(stalls.holds({ partition: 0, offset: 10n }), false);
  });

  it('keeps a partition at its earliest stall', () => {
    const stalls = new PartitionStalls();
    stalls.add(stall(1, 10n));
    stalls.add(stall(1, 12n));
    stalls.add(stall(1, 7n));
    assert.deepEqual(stalls.list().map((s) => s.offset), [7n]);
  });

  it('forgets a stall only once the stored progress of its partition is past the stalled record', () => {
    const stalls = new PartitionStalls();
    stalls.add(stall(1, 10n));
    assert.equal(stalls.releasePassed(1, 10n), undefined, 'the next offset to read is the stalled record: not taken care of');
    assert.equal(stalls.releasePassed(0, 99n), undefined);
    assert.equal(stalls.holds({ partition: 1, offset: 10n }), true);
    assert.deepEqual(stalls.releasePassed(1, 11n), stall(1, 10n));
    assert.equal(stalls.holds({ partition: 1, offset: 10n }), false);
    assert.deepEqual(stalls.list(), []);
  });
});
