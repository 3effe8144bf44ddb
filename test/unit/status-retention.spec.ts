import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { registerRetentionMetrics } from '../../src/platform/db/retention-metrics.ts';
import type { PeriodPartitions, RetentionSnapshot } from '../../src/platform/db/period-partitions.ts';
import { exitCodeFor, formatStatus, serviceStatus, type StatusReport } from '../../src/cli/status-report.ts';
import { gradeRetention, parseRetention } from '../../src/cli/status-retention.ts';

const snapshot: RetentionSnapshot = {
  rows: 1234,
  bytes: 3 * 1024 * 1024,
  oldestRowAgeSeconds: 8 * 86_400,
  partitionsAhead: 2,
  partitionsRetained: 8,
  partitionsOverdue: 0,
  rowsDropped: 98_765,
  currentGeneration: 12,
};

/** The exposition a service serves for one kept table, made by the real gauges. */
async function exposition(table: string, seen: RetentionSnapshot): Promise<string> {
  const registry = new Registry();
  registerRetentionMetrics(registry, { [table]: { snapshot: () => seen } as unknown as PeriodPartitions });
  return registry.metrics();
}

describe('summa status: retention', () => {
  it("reads a service's retention gauges per table", async () => {
    const [reading, ...rest] = parseRetention(await exposition('calculator.requests', snapshot));
    assert.deepEqual(rest, []);
    assert.deepEqual(reading, {
      table: 'calculator.requests',
      rows: 1234,
      bytes: 3 * 1024 * 1024,
      oldestRowAgeSeconds: 8 * 86_400,
      partitionsAhead: 2,
      partitions: 8,
      partitionsOverdue: 0,
      rowsDropped: 98_765,
      currentGeneration: 12,
    });
    assert.deepEqual(parseRetention('summa_outbox_pending_events 3\n'), [], 'nothing before the keeper has run');
  });

  it('says what is kept on one line, and warns when dropping is behind or nothing is made ahead', async () => {
    const [reading] = parseRetention(await exposition('totals.applied_events', snapshot));
    const fine = gradeRetention('totals', 'totals.applied_events', reading);
    assert.equal(fine.detail, '8 partition(s) kept, 2 ahead, 0 overdue; oldest row 8.0 d; 1234 rows, 3.0 MiB; 98765 rows dropped');
    assert.deepEqual(fine.warnings, []);
    const behind = gradeRetention('totals', 'totals.applied_events', { ...reading!, partitionsOverdue: 1, partitionsAhead: 0 });
    assert.equal(behind.warnings.length, 2);
    assert.match(behind.warnings[0]!, /totals\.applied_events: 1 partition\(s\) past the retention window are still there: dropping is behind/);
    assert.match(behind.warnings[1]!, /no partition made ahead/);
    assert.match(gradeRetention('calculator', 'calculator.requests', undefined, 'connection refused').detail, /no reading: connection refused/);
  });

  it('prints a retention section, and a service ready with a warning stays healthy but exits 4', () => {
    const calculator = { name: 'relay', role: 'relay' as const, pid: 1, ports: [8091] };
    const relay = serviceStatus(calculator, true, { status: 200, warnings: ['the oldest outbox event has waited 400 s'] });
    assert.equal(relay.healthy, true);
    assert.equal(relay.detail, 'ready, with a warning');
    const report: StatusReport = {
      topology: 'single',
      dataDir: '/d',
      startedAt: 'now',
      launcher: { pid: 1, alive: true },
      healthy: true,
      components: [relay],
      consumerGroup: 'g',
      topic: 't',
      consumerLag: [],
      partitions: [],
      retention: [gradeRetention('calculator', 'calculator.requests', undefined)],
      warnings: ['relay: the oldest outbox event has waited 400 s'],
    };
    const text = formatStatus(report);
    assert.match(text, /\nWARNING: relay: the oldest outbox event has waited 400 s\n/);
    assert.match(text, /\nRetention \(partitions by period\):\n {2}calculator\.requests \(calculator\): no reading yet/);
    assert.equal(exitCodeFor(report), 4);
  });
});
