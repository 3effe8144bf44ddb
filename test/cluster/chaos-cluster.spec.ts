import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runChaos } from '../chaos/harness.ts';
import { CLUSTER, componentsOf } from '../chaos/topology.ts';
import { missingTool } from '../support/tools.ts';

// The short form of `npm run chaos -- --cluster`: 3 Kafka brokers, PostgreSQL primary and replica,
// 3 calculators behind nginx, 2 relays, 3 totals consumers; every kind of component killed or
// stopped at least once (a broker at a time, so that 2 of 3 stay up) while clients send through
// nginx, then the invariant checked.
describe('chaos on the cluster topology', { skip: missingTool('nginx') || missingTool('openssl') }, () => {
  it('loses no acknowledged sum and counts none twice', { timeout: 300_000 }, async () => {
    const result = await runChaos({ topology: CLUSTER, faultsForMs: 30_000, aimForMs: 45_000, atLeastOnce: 'component', quiesceTimeoutMs: 60_000 });
    assert.deepEqual(result.problems, []);
    assert.ok(result.ok);
    assert.equal(result.lost, 0);
    assert.equal(result.double, 0);
    assert.ok(result.acked > 100, `only ${result.acked} requests were acknowledged`);
    assert.deepEqual(result.components, componentsOf(CLUSTER));
    for (const component of result.components) {
      const { kill9, sigterm } = result.kills[component];
      assert.ok(kill9 + sigterm >= 1, `${component} was never restarted`);
    }
    assert.ok(result.redelivery.aimedKills >= 1, 'a totals consumer was killed (-9) aiming between its two commits');
    assert.ok(result.twins.bothAcked >= 1, 'some request sent twice at once through nginx was acknowledged to both clients');
    assert.ok(result.conflicts.refused >= 1, 'conflicting requests were refused');
    assert.equal(result.conflicts.counted, 0, 'no refused request was counted');
    assert.match(result.summary, /^chaos: acked=\d+ retries=\d+ kills=\d+ lost=0 double=0$/);
  });
});
