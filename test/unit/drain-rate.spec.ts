import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { drainRates } from '../../tools/bench/drain-rate.ts';

describe('drainRates', () => {
  it('measures from the first event applied to the last, and the steady rate between 10% and 90%', () => {
    // Start-up: nothing for 2 s; then 100 events/s, slowed to 50/s for the last 100.
    const samples = [
      { atMs: 1_000, count: 0 },
      { atMs: 2_000, count: 0 },
      { atMs: 3_000, count: 100, cpuSeconds: 4 },
      { atMs: 4_000, count: 200 },
      { atMs: 5_000, count: 300 },
      { atMs: 6_000, count: 400 },
      { atMs: 7_000, count: 450, cpuSeconds: 4.7 },
      { atMs: 8_000, count: 500 },
    ];
    const rates = drainRates(samples, 500, 0);
    assert.equal(rates.eventsPerSecond, 80); // 400 events from 3 s to 8 s
    // From the first sample at ≥ 10% (100 at 3 s) to the first at ≥ 90% (450 at 7 s).
    assert.equal(rates.steadyEventsPerSecond, 87.5);
    assert.ok(Math.abs(rates.steadyCpuMsPerEvent - 2) < 1e-9); // 0.7 CPU s over those 350 events
    assert.equal(rates.firstAppliedAfterSeconds, 3);
    assert.equal(rates.totalSeconds, 8);
  });

  it('is NaN where the backlog was never reached', () => {
    const rates = drainRates([{ atMs: 0, count: 0 }, { atMs: 1_000, count: 10 }], 100, 0);
    assert.ok(Number.isNaN(rates.eventsPerSecond));
    assert.ok(Number.isNaN(rates.steadyEventsPerSecond));
    assert.ok(Number.isNaN(rates.totalSeconds));
    assert.ok(Number.isNaN(rates.steadyCpuMsPerEvent));
    assert.equal(rates.firstAppliedAfterSeconds, 1);
  });
});
