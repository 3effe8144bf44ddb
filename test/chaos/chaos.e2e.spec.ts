import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runChaos } from './harness.ts';
import { componentsOf, serviceInstances, TWO_INSTANCES } from './topology.ts';

// The short form of `npm run chaos`: its own PostgreSQL and Kafka, two instances of each service,
// every instance, the broker and the database killed or stopped at least once while clients keep
// sending (twins and conflicts among them), then the invariant checked.
describe('chaos: kill -9 and restart every component under load', () => {
  it('loses no acknowledged sum and counts none twice', { timeout: 360_000 }, async () => {
    const result = await runChaos({ faultsForMs: 30_000, quiesceTimeoutMs: 90_000 });
    assert.deepEqual(result.problems, []);
    assert.ok(result.ok);
    assert.equal(result.lost, 0);
    assert.equal(result.double, 0);
    assert.ok(result.acked > 100, `only ${result.acked} requests were acknowledged`);
    assert.deepEqual(result.components, componentsOf(TWO_INSTANCES));
    for (const component of result.components) {
      const { kill9, sigterm } = result.kills[component];
      assert.ok(kill9 + sigterm >= 1, `${component} was never restarted`);
    }
    for (const instance of serviceInstances(TWO_INSTANCES)) {
      const { kill9, sigterm } = result.instanceKills[instance]!;
      assert.ok(kill9 + sigterm >= 1, `${instance} was never restarted`);
    }
    const { redelivery } = result;
    assert.ok(redelivery.landed >= 1, `no kill -9 of a totals consumer (of ${redelivery.aimedKills}) landed between its database commit and its Kafka commit`);
    assert.ok(redelivery.records >= 1);
    assert.ok(redelivery.duplicatesSkipped >= 1, 'Kafka delivered applied records again and the consumers skipped them');
    assert.ok(result.twins.bothAcked >= 1, 'some request sent to both calculators at once was acknowledged to both clients');
    assert.ok(result.conflicts.refused >= 1, 'conflicting requests were refused');
    assert.equal(result.conflicts.counted, 0, 'no refused request was counted');
    assert.ok(result.retries > 0, 'the faults made clients retry');
    assert.match(result.summary, /^chaos: acked=\d+ retries=\d+ kills=\d+ lost=0 double=0$/);
  });
});
