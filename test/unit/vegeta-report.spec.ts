import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HttpLoadError, parseVegetaReport } from '../../tools/bench/http-load.ts';

// A `vegeta report -type=json` of v12.13.0, trimmed: durations in nanoseconds.
const report = {
  latencies: { total: 3_000_000_000, mean: 1_000_000, '50th': 1_137_095, '90th': 2_000_000, '95th': 3_000_000, '99th': 20_243_461, max: 40_000_000, min: 200_000 },
  bytes_in: { total: 300_000, mean: 100 },
  bytes_out: { total: 60_000, mean: 20 },
  earliest: '2026-12-02T04:50:00.000000000Z',
  latest: '2026-12-02T04:50:01.990000000Z',
  end: '2026-12-02T04:50:02.000000000Z',
  duration: 1_990_000_000,
  wait: 10_000_000,
  requests: 3_010,
  rate: 1512.5,
  throughput: 1505,
  success: 0.99,
  status_codes: { '0': 4, '201': 2_990, '200': 6, '302': 5, '500': 5 },
  errors: ['Post "http://127.0.0.1:1/v1/sums": EOF', '500 Internal Server Error'],
};

describe('parseVegetaReport', () => {
  it('counts only 2xx answers as acknowledged, over the time from the first request to the last answer', () => {
    const figures = parseVegetaReport(JSON.stringify(report));
    assert.equal(figures.requests, 3_010);
    assert.equal(figures.acked, 2_996); // 3xx counts as success for vegeta, not here
    assert.equal(figures.errors, 14);
    assert.equal(figures.wallSeconds, 2);
    assert.equal(figures.ackedPerSecond, 1_498);
    assert.equal(figures.p50Ms, 1.137095);
    assert.equal(figures.p99Ms, 20.243461);
    assert.deepEqual(figures.errorMessages, report.errors);
  });

  it('takes a run without errors, where vegeta may write null for them', () => {
    const figures = parseVegetaReport(JSON.stringify({ ...report, status_codes: { '201': 10 }, requests: 10, errors: null }));
    assert.equal(figures.acked, 10);
    assert.equal(figures.errors, 0);
    assert.deepEqual(figures.errorMessages, []);
  });

  it('says what is wrong with a report it cannot read', () => {
    assert.throws(() => parseVegetaReport('Requests [total] 10'), (error: unknown) => error instanceof HttpLoadError && /not JSON/.test(error.message));
    assert.throws(() => parseVegetaReport('{"latencies":{}}'), /no requests or duration/);
  });
});
