import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runChaos } from './harness.ts';
import { SHORT_WINDOWS } from './window-audit.ts';

// `npm run chaos -- --windows` in short: the same faults while the services keep requests and applied
// events for seconds only, so partitions are switched, checkpointed and dropped between the kills.
describe('chaos with short windows: kill -9 and restart every component while partitions are dropped', () => {
  it('loses no acknowledged sum and counts none twice', { timeout: 420_000 }, async () => {
    const result = await runChaos({ faultsForMs: 30_000, quiesceTimeoutMs: 90_000, windows: SHORT_WINDOWS });
    assert.deepEqual(result.problems, []);
    assert.ok(result.ok);
    assert.equal(result.lost, 0);
    assert.equal(result.double, 0);
    assert.ok(result.acked > 100, `only ${result.acked} requests were acknowledged`);
    const audit = result.windowAudit!;
    assert.ok(audit.droppedGenerations.requests >= 1 && audit.droppedGenerations.appliedEvents >= 1, 'partitions were dropped during the run');
    assert.match(result.summary, /^chaos: acked=\d+ retries=\d+ kills=\d+ lost=0 double=0$/);
  });
});
