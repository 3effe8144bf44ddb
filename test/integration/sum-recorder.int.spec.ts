import assert from 'node:assert/strict';
import { after, before, describe, it, mock } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import pg from 'pg';
import { createCalculatorMetrics } from '../../src/calculator/metrics.ts';
import { CALCULATOR_MIGRATIONS } from '../../src/calculator/schema.ts';
import { SumRecorder } from '../../src/calculator/sum-recorder.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

describe('SumRecorder against real PostgreSQL', () => {
  let database: TestDatabase;
  let sql: pg.Pool;

  before(async () => {
    database = await createTestDatabase('recorder');
    sql = new pg.Pool({ connectionString: database.url, max: 2 });
    await migrate(sql, 'calculator', CALCULATOR_MIGRATIONS);
  });

  after(async () => {
    mock.timers.reset();
    await sql?.end();
    await database?.drop();
  });

  // The ages `summa verify` judges (a request's grace period, the oldest outbox event) are measured
  // by the database's clock, so the times they start from must come from it too.
  it("stamps accepted_at and the outbox created_at with the database's clock, not the calculator host's", async () => {
    const recorder = new SumRecorder(sql, { topic: 'sums', maxBatchSize: 10, maxConcurrentWrites: 1, maxQueued: 10 }, pino({ level: 'silent' }), createCalculatorMetrics(new Registry()), () => {});
    // The calculator host's clock runs two hours fast.
    mock.timers.enable({ apis: ['Date'], now: Date.now() + 2 * 3600_000 });
    try {
      await Promise.all([
        recorder.record({ requestId: 'skewed-1', num1: 1n, num2: 2n, sum: 3n }),
        recorder.record({ requestId: 'skewed-2', num1: 3n, num2: 4n, sum: 7n }),
      ]);
    } finally {
      mock.timers.reset();
    }
    const { rows } = await sql.query<{ request_id: string; accepted_skew: number; created_skew: number; same_time: boolean }>(
      `SELECT r.request_id,
              extract(epoch FROM r.accepted_at - now())::float8 AS accepted_skew,
              extract(epoch FROM o.created_at - now())::float8 AS created_skew,
              o.created_at = r.accepted_at AS same_time
       FROM calculator.requests r JOIN calculator.outbox o USING (event_id) ORDER BY r.request_id`,
    );
    assert.deepEqual(rows.map((row) => row.request_id), ['skewed-1', 'skewed-2']);
    for (const row of rows) {
      assert.ok(Math.abs(row.accepted_skew) < 60, `accepted_at is ${row.accepted_skew}s from the database's now()`);
      assert.ok(Math.abs(row.created_skew) < 60, `created_at is ${row.created_skew}s from the database's now()`);
      assert.equal(row.same_time, true, 'the request and its outbox row carry the one commit time');
    }
  });

  // RELAY_MODE=debezium: change data capture reads the outbox's inserts off the write-ahead log, so
  // the rows need not stay in the table.
  it('under change data capture, leaves the outbox empty while the write-ahead log carries each event once', async () => {
    const slot = `recorder_${process.pid}_${Date.now()}`;
    await sql.query("SELECT pg_create_logical_replication_slot($1, 'test_decoding')", [slot]);
    try {
      const recorder = new SumRecorder(
        sql,
        { topic: 'sums', maxBatchSize: 10, maxConcurrentWrites: 1, maxQueued: 10, deleteOutboxRows: true },
        pino({ level: 'silent' }),
        createCalculatorMetrics(new Registry()),
        () => {},
      );
      const results = await Promise.all([
        recorder.record({ requestId: 'captured-1', num1: 1n, num2: 2n, sum: 3n }),
        recorder.record({ requestId: 'captured-2', num1: 3n, num2: 4n, sum: 7n }),
        recorder.record({ requestId: 'captured-1', num1: 1n, num2: 2n, sum: 3n }),
      ]);
      assert.deepEqual(results.map((result) => result.replayed), [false, false, true]);
      assert.equal((await recorder.record({ requestId: 'captured-3', num1: 5n, num2: 5n, sum: 10n })).replayed, false);

      const outbox = await sql.query("SELECT 1 FROM calculator.outbox WHERE message_key LIKE 'captured-%'");
      assert.equal(outbox.rowCount, 0, 'each outbox row is deleted in the transaction that wrote it');
      const requests = await sql.query("SELECT 1 FROM calculator.requests WHERE request_id LIKE 'captured-%'");
      assert.equal(requests.rowCount, 3);
      const { rows } = await sql.query<{ data: string }>('SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)', [slot]);
      const inserts = rows.filter((row) => row.data.startsWith('table calculator.outbox: INSERT:'));
      assert.equal(inserts.length, 3, 'the log carries one insert per accepted request, none for the replay');
      for (const id of ['captured-1', 'captured-2', 'captured-3']) {
        assert.equal(inserts.filter((row) => row.data.includes(`message_key[text]:'${id}'`)).length, 1);
      }
    } finally {
      await sql.query('SELECT pg_drop_replication_slot($1)', [slot]);
    }
  });
});
