import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ghzArguments, readGhzReport } from '../../tools/bench/ghz-load.ts';

const ms = (n: number) => n * 1e6;
const latencies = [
  { percentage: 50, latency: ms(4) },
  { percentage: 99, latency: ms(20) },
];

describe('reading a ghz report for the benchmark', () => {
  it('counts only OK answers as acknowledged, and every call for the generator CPU per call', () => {
    const result = readGhzReport(
      {
        count: 1000,
        total: 2e9,
        statusCodeDistribution: { OK: 990, Unavailable: 8, DeadlineExceeded: 2 },
        errorDistribution: { 'rpc error: code = Unavailable desc = closing': 8, 'rpc error: code = DeadlineExceeded': 2 },
        latencyDistribution: latencies,
      },
      0.5,
      { mode: 'closed', connections: 10, concurrency: 200, durationSeconds: 2 },
    );
    assert.equal(result.acked, 990);
    assert.equal(result.failed, 10);
    assert.equal(result.requests, 1000);
    assert.equal(result.ackedPerSecond, 495);
    assert.equal(result.wallSeconds, 2);
    assert.equal(result.p50Ms, 4);
    assert.equal(result.p99Ms, 20);
    assert.equal(result.generatorCpuMsPerRequest, 0.5);
    assert.equal(result.dropped, 0);
    assert.deepEqual(result.statusCodes, { OK: 990, Unavailable: 8, DeadlineExceeded: 2 });
  });

  it('acknowledges nothing when ghz got no answer at all (no status distribution)', () => {
    const result = readGhzReport({ count: 0, total: 1e9, statusCodeDistribution: null, errorDistribution: null, latencyDistribution: null }, 0.01, {
      mode: 'fill',
      connections: 1,
      concurrency: 1,
      requests: 10,
    });
    assert.equal(result.acked, 0);
    assert.ok(Number.isNaN(result.p99Ms));
    assert.deepEqual(result.errors, {});
  });

  it('reports the calls an open loop did not make as dropped', () => {
    const result = readGhzReport({ count: 900, total: 10e9, statusCodeDistribution: { OK: 900 }, latencyDistribution: latencies }, 0.1, {
      mode: 'open',
      rate: 100.4,
      durationSeconds: 10,
      connections: 10,
    });
    assert.equal(result.dropped, 100);
  });
});

describe("ghz's command line", () => {
  const flags = (args: string[]) => Object.fromEntries(args.filter((arg) => arg.startsWith('--')).map((arg) => arg.slice(2).split('=')).map(([name, ...value]) => [name!, value.join('=')]));

  it('sends Add without a request id, so that every call is a new sum', () => {
    const data = JSON.parse(flags(ghzArguments({ mode: 'fill', connections: 2, concurrency: 4, requests: 5 }, '/tmp/r.json')).data!) as Record<string, unknown>;
    assert.equal('request_id' in data, false);
  });

  it('lets calls in flight at the end of a timed run finish and be counted', () => {
    const closed = flags(ghzArguments({ mode: 'closed', connections: 10, concurrency: 200, durationSeconds: 8 }, '/tmp/r.json'));
    assert.deepEqual([closed.connections, closed.concurrency, closed.duration, closed['duration-stop']], ['10', '200', '8s', 'wait']);
    const open = flags(ghzArguments({ mode: 'open', rate: 1234.6, durationSeconds: 8, connections: 10 }, '/tmp/r.json'));
    assert.deepEqual([open.rps, open.concurrency, open['duration-stop']], ['1235', '2000', 'wait']);
  });

  it('never opens more connections than there are callers', () => {
    const fill = flags(ghzArguments({ mode: 'fill', connections: 10, concurrency: 4, requests: 100 }, '/tmp/r.json'));
    assert.deepEqual([fill.connections, fill.concurrency, fill.total], ['4', '4', '100']);
  });
});
