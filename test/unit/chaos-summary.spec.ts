import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chaosSummary, checkRefusals } from '../chaos/harness.ts';

describe('chaos summary line', () => {
  const counts = { acked: 120, retries: 7, totalKills: 9 };

  it('says lost=0 double=0 only for a run that was measured and passed', () => {
    assert.equal(chaosSummary({ ...counts, ok: true, measured: true, lost: 0, double: 0 }), 'chaos: acked=120 retries=7 kills=9 lost=0 double=0');
  });

  it('says FAILED and n/a when the harness failed before measuring anything', () => {
    const line = chaosSummary({ ...counts, ok: false, measured: false, lost: 0, double: 0 });
    assert.equal(line, 'chaos: FAILED acked=120 retries=7 kills=9 lost=n/a double=n/a');
    assert.doesNotMatch(line, /lost=0/);
  });

  it('says FAILED with the figures when the audit found a problem', () => {
    assert.equal(chaosSummary({ ...counts, ok: false, measured: true, lost: 2, double: 0 }), 'chaos: FAILED acked=120 retries=7 kills=9 lost=2 double=0');
  });
});

describe('chaos check of refused conflicting requests', () => {
  const recorded = new Map([
    ['a', 10n],
    ['b', 20n],
  ]);

  it('passes refusals of other numbers than those recorded', () => {
    assert.deepEqual(checkRefusals([{ requestId: 'a', sum: 11n }, { requestId: 'b', sum: -20n }], recorded), { counted: [], unrecorded: [] });
  });

  it('flags a refused request whose numbers were recorded, and one refused for an id with nothing recorded', () => {
    const counted = { requestId: 'b', sum: 20n };
    const unrecorded = { requestId: 'c', sum: 5n };
    assert.deepEqual(checkRefusals([{ requestId: 'a', sum: 1n }, counted, unrecorded], recorded), { counted: [counted], unrecorded: [unrecorded] });
  });
});
