import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { auditInvariant, formatReport } from '../../src/cli/invariant-audit.ts';
import { CALCULATOR_MIGRATIONS, CALCULATOR_SCHEMA } from '../../src/calculator/schema.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { TOTALS_MIGRATIONS, TOTALS_SCHEMA } from '../../src/totals/schema.ts';
import { loadHistory, parseEventCount } from '../../tools/bench/history-load.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

describe("the benchmark's history load, against real PostgreSQL", () => {
  let database: TestDatabase;
  let sql: pg.Pool;

  before(async () => {
    database = await createTestDatabase('history');
    sql = new pg.Pool({ connectionString: database.url, max: 4 });
    await migrate(sql, CALCULATOR_SCHEMA, CALCULATOR_MIGRATIONS);
    await migrate(sql, TOTALS_SCHEMA, TOTALS_MIGRATIONS);
    // What the pipeline recorded before the history came: one event on Kafka partition 1.
    await sql.query(`INSERT INTO totals.partition_totals (partition, total, count) VALUES (1, 5, 1)`);
    await sql.query(`INSERT INTO calculator.requests (request_id, num1, num2, sum, event_id, generation) VALUES ('before', 2, 3, 5, gen_random_uuid(), 0)`);
    await sql.query(
      `INSERT INTO totals.applied_events (event_id, request_id, amount, accepted_at, kafka_partition, kafka_offset, generation)
       SELECT event_id, request_id, sum, accepted_at, 1, 0, 0 FROM calculator.requests`,
    );
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
  });

  it('spreads the events over 7 generations, checkpoints the closed ones, and summa verify passes', async () => {
    const load = await loadHistory({ sql, events: 7_000, log: () => {} });
    assert.deepEqual(load.generations.requests, [0, 1, 2, 3, 4, 5, 6]);
    assert.deepEqual(load.generations.applied_events, [0, 1, 2, 3, 4, 5, 6]);

    const { rows: requests } = await sql.query<{ generation: number; n: string }>('SELECT generation, count(*)::text AS n FROM calculator.requests GROUP BY 1 ORDER BY 1');
    assert.deepEqual(requests.map((row) => [row.generation, Number(row.n)]), [[0, 1_001], [1, 1_000], [2, 1_000], [3, 1_000], [4, 1_000], [5, 1_000], [6, 1_000]]);
    const { rows: catalogue } = await sql.query<{ generation: number; row_count: string | null; current: boolean }>(
      `SELECT generation, row_count::text, (started_at IS NOT NULL AND ended_at IS NULL) AS current FROM totals.partitions WHERE table_name = 'applied_events' AND started_at IS NOT NULL ORDER BY 1`,
    );
    assert.deepEqual(catalogue.map((row) => [row.generation, row.row_count, row.current]), [
      [0, '1001', false], [1, '1000', false], [2, '1000', false], [3, '1000', false], [4, '1000', false], [5, '1000', false], [6, null, true],
    ]);

    // Sum of i + 1 for i = 1..7000, plus the 5 recorded before, all on the partition already in use.
    const { rows: totals } = await sql.query<{ partition: number; total: string; count: string }>('SELECT partition, total::text, count::text FROM totals.partition_totals WHERE partition >= 0');
    assert.deepEqual(totals, [{ partition: 1, total: String((7_000 * 7_001) / 2 + 7_000 + 5), count: '7001' }]);

    const report = await auditInvariant({ calculator: sql, totals: sql });
    assert.equal(report.ok, true, formatReport(report));
  });

  it('reads 20000000, 20_000_000 and 20e6 alike, and names the flag on bad input', () => {
    assert.equal(parseEventCount('20000000'), 20_000_000);
    assert.equal(parseEventCount('20_000_000'), 20_000_000);
    assert.equal(parseEventCount('20e6'), 20_000_000);
    assert.throws(() => parseEventCount('lots'), /--history must be a whole number/);
    assert.throws(() => parseEventCount('3'), /at least 7/);
    assert.throws(() => parseEventCount('1.5e3'.replace('e3', '')), /--history/);
  });
});
