import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Pool } from '../../src/platform/db/pool.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { bucketCounts, latencyPercentiles, type BucketCounts } from '../../src/totals/console/latency-window.ts';
import { PipelineSampler, type PipelineSample } from '../../src/totals/console/pipeline-sampler.ts';
import type { PipelineStatus } from '../../src/totals/console/pipeline-status.ts';
import type { TotalsStore } from '../../src/totals/totals-store.ts';

const logger = createLogger('sampler-test', { LOG_LEVEL: 'silent' });

/** A database whose figures the test sets: the count, the outbox sequence, the backlog. */
function fakeDatabase() {
  const figures = { count: 0, accepted: 0, pending: 0, failSequence: false };
  const pool = {
    async query(sql: string) {
      if (sql.includes('outbox_id_seq')) {
        if (figures.failSequence) throw new Error('relation "calculator.outbox_id_seq" does not exist');
        return { rows: [{ accepted: String(figures.accepted) }] };
      }
      return { rows: [{ pending: String(figures.pending), parked: '0', oldest: figures.pending ? 3.5 : null }] };
    },
  } as unknown as Pool;
  const store = { readTotal: async () => ({ total: String(figures.count * 10), count: figures.count }) } as unknown as TotalsStore;
  return { figures, pool, store };
}

const status: PipelineStatus = {
  probe: async () => ({
    components: [{ name: 'relay', role: 'relay', healthy: false, detail: 'process 42 is not running' }],
    consumerLag: [
      { partition: 0, committed: 5, end: 8, lag: 3 },
      { partition: 1, committed: null, end: null, lag: null, error: 'no leader' },
    ],
  }),
};

function nextSample(sampler: PipelineSampler): Promise<PipelineSample> {
  return new Promise((resolve) => {
    const unsubscribe = sampler.subscribe((sample) => {
      unsubscribe();
      resolve(sample);
    });
  });
}

describe('the console sampler', () => {
  it('turns counts into rates per second between samples, and sums the known lags', async () => {
    const { figures, pool, store } = fakeDatabase();
    const sampler = new PipelineSampler({ pool, store, status, logger, intervalMs: 200, statusIntervalMs: 50 });
    try {
      const first = await nextSample(sampler);
      assert.equal(first.acceptedPerSecond, null, 'no rate without a previous sample');
      assert.equal(first.appliedPerSecond, null);
      figures.count = 40;
      figures.accepted = 50;
      figures.pending = 10;
      await new Promise((resolve) => setTimeout(resolve, 100)); // the status probe has answered by now
      const second = await nextSample(sampler);
      const seconds = (second.at - first.at) / 1000;
      assert.ok(Math.abs(second.appliedPerSecond! - 40 / seconds) < 1e-9);
      assert.ok(Math.abs(second.acceptedPerSecond! - 50 / seconds) < 1e-9);
      assert.equal(second.total, '400');
      assert.deepEqual(second.outbox, { pending: 10, parked: 0, oldestAgeSeconds: 3.5 });
      assert.equal(second.totalLag, 3, 'the partition without a leader is left out, not counted as 0 lag');
      assert.deepEqual(second.components.map((c) => c.healthy), [false]);
      assert.deepEqual(sampler.recent().map((s) => s.at), [first.at, second.at]);
    } finally {
      sampler.stop();
    }
  });

  it('says which figure it could not read, and still gives the others', async () => {
    const { figures, pool, store } = fakeDatabase();
    figures.failSequence = true;
    const sampler = new PipelineSampler({ pool, store, status, logger, intervalMs: 100 });
    try {
      const sample = await nextSample(sampler);
      assert.equal(sample.acceptedPerSecond, null);
      assert.equal(sample.count, 0);
      assert.match(sample.problems.join('\n'), /accepted Adds \(calculator\.outbox_id_seq\): relation "calculator\.outbox_id_seq" does not exist/);
    } finally {
      sampler.stop();
    }
  });

  it('shows the calculators’ ack latency over its window, and names those it could not read', async () => {
    const { pool, store } = fakeDatabase();
    const reading = (count: number): BucketCounts => [[0.005, count], [Infinity, count]];
    let calls = 0;
    const ack = async () => {
      calls += 1;
      if (calls === 2) throw new Error('run state unreadable');
      return calls === 1
        ? { readings: new Map([['http://127.0.0.1:1/metrics', reading(3)]]), problems: ['ack latency: http://127.0.0.1:2/metrics: the calculator is down'] }
        : { readings: new Map([['http://127.0.0.1:1/metrics', reading(7)]]), problems: [] };
    };
    const sampler = new PipelineSampler({ pool, store, status, logger, intervalMs: 100, ack });
    // One watcher throughout: the window is dropped while nobody watches.
    const samples: PipelineSample[] = [];
    const threeSamples = new Promise<void>((resolve) => sampler.subscribe((sample) => samples.push(sample) >= 3 && resolve()));
    try {
      await threeSamples;
      const [first, second, third] = samples as [PipelineSample, PipelineSample, PipelineSample];
      assert.equal(first.ack, null, 'a first reading has nothing to be differenced with');
      assert.ok(first.problems.some((p) => p.includes('127.0.0.1:2')), first.problems.join('; '));
      assert.equal(second.ack, null);
      assert.ok(second.problems.includes('ack latency: run state unreadable'), second.problems.join('; '));
      assert.deepEqual(third.ack, { events: 4, p50: 0.005, p99: 0.005 }, 'counted since the earliest reading kept');
    } finally {
      sampler.stop();
    }
  });

  it('samples only while someone listens, and keeps a bounded history', async () => {
    const { pool, store } = fakeDatabase();
    const sampler = new PipelineSampler({ pool, store, status, logger, intervalMs: 20, historySize: 3 });
    try {
      const seen: number[] = [];
      const unsubscribe = sampler.subscribe((sample) => seen.push(sample.at));
      await new Promise((resolve) => setTimeout(resolve, 150));
      unsubscribe();
      const count = seen.length;
      assert.ok(count >= 4, `sampled ${count} times`);
      assert.equal(sampler.recent().length, 3);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(sampler.recent().at(-1)!.at, seen.at(-1), 'no sample is taken while nobody listens');
    } finally {
      sampler.stop();
    }
  });
});

describe('the console sampler stopping', () => {
  it('tells every listener, and any that comes later at once', () => {
    const { pool, store } = fakeDatabase();
    const sampler = new PipelineSampler({ pool, store, status, logger, intervalMs: 1_000 });
    const ended: string[] = [];
    sampler.subscribe(() => {}, () => ended.push('open page'));
    sampler.stop();
    sampler.subscribe(() => {}, () => ended.push('reconnecting page'));
    assert.deepEqual(ended, ['open page', 'reconnecting page']);
  });
});

describe('end-to-end latency percentiles from histogram buckets', () => {
  const buckets = (counts: number[]): BucketCounts => [0.01, 0.05, 0.25, 1, Infinity].map((bound, i) => [bound, counts[i]!]);

  it('counts only the events since the earlier reading, and names the bucket each percentile falls under', () => {
    const before = buckets([100, 100, 100, 100, 100]);
    const now = buckets([150, 190, 199, 200, 200]); // 100 new: 50 ≤ 10 ms, 40 more ≤ 50 ms, 9 ≤ 250 ms, 1 ≤ 1 s
    assert.deepEqual(latencyPercentiles(now, before), { events: 100, p50: 0.01, p99: 0.25 });
    assert.deepEqual(latencyPercentiles(now, undefined), { events: 200, p50: 0.01, p99: 0.25 });
  });

  it('says +Inf above the largest bucket (kept through JSON), and nothing without events', () => {
    assert.deepEqual(latencyPercentiles(buckets([0, 0, 0, 0, 3]), undefined), { events: 3, p50: '+Inf', p99: '+Inf' });
    assert.deepEqual(latencyPercentiles(buckets([5, 5, 5, 5, 5]), buckets([5, 5, 5, 5, 5])), { events: 0, p50: null, p99: null });
  });

  it('reads the buckets of a prom-client histogram', () => {
    const values = [
      { metricName: 'x_bucket', labels: { le: '+Inf' }, value: 4 },
      { metricName: 'x_bucket', labels: { le: 0.5 }, value: 3 },
      { metricName: 'x_sum', labels: {}, value: 1.2 },
      { metricName: 'x_count', labels: {}, value: 4 },
    ];
    assert.deepEqual(bucketCounts(values), [[0.5, 3], [Infinity, 4]]);
  });
});
