import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jitSettled, warmUntilJitSettles } from '../../tools/bench/broker-warmup.ts';

describe("the benchmark's broker warm-up", () => {
  it('counts the JIT as settled under 15% of the broker CPU, never when the broker did nothing', () => {
    assert.equal(jitSettled(0.5, 2), false);
    assert.equal(jitSettled(0.29, 2), true);
    assert.equal(jitSettled(0, 0), false);
  });

  it('runs rounds until the most it may, adding up what they acknowledged, when the JIT never settles', async () => {
    let rounds = 0;
    // No such process: it never uses CPU, so its JIT never counts as settled.
    const warmup = await warmUntilJitSettles(2 ** 30, 3, async () => {
      rounds += 1;
      return 10;
    });
    assert.deepEqual(warmup, { rounds: 3, acked: 30, lastJitShare: 0 });
    assert.equal(rounds, 3);
  });
});
