import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COMPONENTS, runChaos } from './harness.ts';

// The short form of `npm run chaos`: its own PostgreSQL and Kafka, every component killed or
// stopped at least once while clients keep sending, then the invariant checked.
describe('chaos: kill -9 and restart every component under load', () => {
  it('loses no acknowledged sum and counts none twice', { timeout: 300_000 }, async () => {
    const result = await runChaos({ faultsForMs: 40_000, quiesceTimeoutMs: 90_000 });
    assert.deepEqual(result.problems, []);
    assert.ok(result.ok);
    assert.equal(result.lost, 0);
    assert.equal(result.double, 0);
    assert.ok(result.acked > 100, `only ${result.acked} requests were acknowledged`);
    for (const component of COMPONENTS) {
      const { kill9, sigterm } = result.kills[component];
      assert.ok(kill9 + sigterm >= 1, `${component} was never restarted`);
    }
    assert.ok(result.retries > 0, 'the faults made clients retry');
    assert.match(result.summary, /^chaos: acked=\d+ retries=\d+ kills=\d+ lost=0 double=0$/);
  });
});
