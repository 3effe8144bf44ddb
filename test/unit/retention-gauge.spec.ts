import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { retentionGauge } from '../../tools/bench/retention-cycle.ts';

describe("the retention cycle's reading of /metrics", () => {
  const exposition = [
    '# TYPE summa_retention_rows gauge',
    'summa_retention_rows{service="calculator",table="calculator.requests"} 12345',
    'summa_retention_partitions_ahead{service="calculator",table="calculator.requests"} 2',
    'summa_retention_partitions{service="calculator",table="calculator.requests"} 6',
  ].join('\n');

  it("takes the gauge of the named table, not one whose name merely starts alike", () => {
    assert.equal(retentionGauge(exposition, 'summa_retention_rows', 'calculator.requests'), 12_345);
    assert.equal(retentionGauge(exposition, 'summa_retention_partitions', 'calculator.requests'), 6);
    assert.equal(retentionGauge(exposition, 'summa_retention_rows', 'totals.applied_events'), undefined);
  });
});
