import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatProgress } from '../../src/cli/load-command.ts';
import type { RunState } from '../../src/cli/run-state.ts';
import { entryPointsOf } from '../../src/cli/targets.ts';

const base: Omit<RunState, 'components' | 'topology'> = {
  launcherPid: 1,
  startedAt: '2026-01-01T00:00:00.000Z',
  databaseUrl: 'postgres://summa@127.0.0.1:55432/summa',
  kafkaBrokers: '127.0.0.1:9092',
  consumerGroup: 'summa-totals',
  topic: 'summa.sums.v1',
};

describe('where the operator commands find the services', () => {
  it('single node: the calculator gRPC port and the totals service, over the scheme they serve', () => {
    const state: RunState = {
      ...base,
      topology: 'single',
      components: [
        { name: 'calculator', role: 'calculator', pid: 2, ports: [19090, 18090], healthUrl: 'https://127.0.0.1:18090/readyz' },
        { name: 'totals', role: 'totals', pid: 3, ports: [18080], healthUrl: 'https://127.0.0.1:18080/readyz' },
      ],
    };
    assert.deepEqual(entryPointsOf(state), {
      grpcAddress: '127.0.0.1:19090',
      totalsUrl: 'https://127.0.0.1:18080',
      calculatorMetricsUrls: ['https://127.0.0.1:18090/metrics'],
    });
  });

  it('cluster: nginx in front (gRPC, calculator HTTP, totals), every calculator for its metrics', () => {
    const state: RunState = {
      ...base,
      topology: 'cluster',
      components: [
        { name: 'calculator-1', role: 'calculator', pid: 2, ports: [19091, 18091], healthUrl: 'http://127.0.0.1:18091/readyz' },
        { name: 'calculator-2', role: 'calculator', pid: 3, ports: [19092, 18092], healthUrl: 'http://127.0.0.1:18092/readyz' },
        { name: 'totals-1', role: 'totals', pid: 4, ports: [18081], healthUrl: 'http://127.0.0.1:18081/readyz' },
        { name: 'nginx', role: 'nginx', pid: 5, ports: [9090, 8090, 8080] },
      ],
    };
    assert.deepEqual(entryPointsOf(state), {
      grpcAddress: '127.0.0.1:9090',
      totalsUrl: 'http://127.0.0.1:8080',
      calculatorMetricsUrls: ['http://127.0.0.1:18091/metrics', 'http://127.0.0.1:18092/metrics'],
    });
  });
});

describe('summa load figures', () => {
  it('the progress line', () => {
    const line = formatProgress({ elapsedMs: 2_500, sent: 120, acknowledged: 118, errors: 2, currentRate: 47, p50Ms: 3.21, p99Ms: 41.6 }, 10);
    assert.equal(line, 'sent 120  acked 118  errors 2  47/s  p50 3.2 ms  p99 42 ms  2.5/10 s');
  });
});
