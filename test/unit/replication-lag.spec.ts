import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { replicaLagOf } from '../../src/platform/db/replication-lag.ts';

describe('replica lag', () => {
  const row = { in_recovery: true, streaming: true, lag_bytes: 0, replay_age_seconds: 42 };

  it('is 0 while the replica streams and has replayed all it received, however old its last commit', () => {
    assert.deepEqual(replicaLagOf(row), { inRecovery: true, streaming: true, bytes: 0, seconds: 0 });
  });

  it('is the age of the last replayed commit while WAL waits for replay', () => {
    assert.deepEqual(replicaLagOf({ ...row, lag_bytes: 8192, replay_age_seconds: 1.5 }), { inRecovery: true, streaming: true, bytes: 8192, seconds: 1.5 });
  });

  it('is the age of the last replayed commit while the replica does not stream: it cannot know what it misses', () => {
    assert.equal(replicaLagOf({ ...row, streaming: false }).seconds, 42);
  });

  it('is unknown when nothing was received or replayed since the replica started', () => {
    assert.deepEqual(replicaLagOf({ ...row, streaming: false, lag_bytes: null, replay_age_seconds: null }), {
      inRecovery: true,
      streaming: false,
      bytes: null,
      seconds: null,
    });
  });

  it('is 0 on a server that is not in recovery (a promoted replica)', () => {
    assert.equal(replicaLagOf({ ...row, in_recovery: false, streaming: false, lag_bytes: null, replay_age_seconds: 300 }).seconds, 0);
  });
});
