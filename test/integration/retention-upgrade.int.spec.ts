import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createCalculatorMetrics } from '../../src/calculator/metrics.ts';
import { CALCULATOR_MIGRATIONS, CALCULATOR_SCHEMA } from '../../src/calculator/schema.ts';
import { SumRecorder } from '../../src/calculator/sum-recorder.ts';
import type { SumAccepted } from '../../src/events/sum-accepted.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { PeriodPartitions } from '../../src/platform/db/period-partitions.ts';
import { TOTALS_MIGRATIONS, TOTALS_SCHEMA } from '../../src/totals/schema.ts';
import { TOO_OLD_REASON, TotalsStore } from '../../src/totals/totals-store.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

const silent = pino({ level: 'silent' });
const OLD_REQUESTS = 30;

/** A directory with the migrations of `directory` numbered below `below`: the schema as it was before them. */
async function migrationsBefore(directory: string, below: number, workDir: string): Promise<string> {
  const target = path.join(workDir, path.basename(path.dirname(directory)));
  await mkdir(target);
  for (const name of await readdir(directory)) {
    if (/^\d{3}_/.test(name) && Number(name.slice(0, 3)) < below) await copyFile(path.join(directory, name), path.join(target, name));
  }
  return target;
}

async function stepUntil(keepers: PeriodPartitions[], done: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const keeper of keepers) await keeper.step();
    if (await done()) return;
    if (Date.now() > deadline) throw new Error('the keepers did not get there in time');
    await sleep(50);
  }
}

// A database written before requests and applied events were kept by period: its rows become
// generation 0, are found as before, and go like any other generation once the window is over.
describe('bounded state: upgrading a database from before the partitions by period', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let workDir: string;

  before(async () => {
    database = await createTestDatabase('retention_upgrade');
    sql = new pg.Pool({ connectionString: database.url, max: 6 });
    workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-upgrade-'));
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('keeps the old rows as generation 0, replaying and deduplicating by them, then switches and drops them after the window', async () => {
    await migrate(sql, CALCULATOR_SCHEMA, await migrationsBefore(CALCULATOR_MIGRATIONS, 5, workDir));
    await migrate(sql, TOTALS_SCHEMA, await migrationsBefore(TOTALS_MIGRATIONS, 6, workDir));

    // Written the way the services wrote them then: request and outbox row, applied event and total.
    const old = Array.from({ length: OLD_REQUESTS }, (_, i) => ({
      requestId: `before-upgrade-${i}`,
      num1: BigInt(i),
      num2: 1_000n,
      sum: BigInt(i) + 1_000n,
      eventId: randomUUID(),
      acceptedAt: new Date(Date.now() - 60_000 + i),
    }));
    for (const r of old) {
      await sql.query('INSERT INTO calculator.requests (request_id, num1, num2, sum, event_id, accepted_at) VALUES ($1, $2, $3, $4, $5, $6)', [
        r.requestId,
        r.num1.toString(),
        r.num2.toString(),
        r.sum.toString(),
        r.eventId,
        r.acceptedAt,
      ]);
    }
    const applied = old.slice(0, OLD_REQUESTS - 5);
    const unpublished = old.slice(OLD_REQUESTS - 5);
    for (const r of unpublished) {
      await sql.query(`INSERT INTO calculator.outbox (event_id, topic, message_key, payload) VALUES ($1, 'sums', $2, '{}')`, [r.eventId, r.requestId]);
    }
    for (const [i, r] of applied.entries()) {
      await sql.query('INSERT INTO totals.applied_events (event_id, request_id, amount, accepted_at, kafka_partition, kafka_offset) VALUES ($1, $2, $3, $4, 0, $5)', [
        r.eventId,
        r.requestId,
        r.sum.toString(),
        r.acceptedAt,
        i,
      ]);
    }
    const appliedSum = applied.reduce((total, r) => total + r.sum, 0n);
    await sql.query('INSERT INTO totals.partition_totals (partition, total, count) VALUES (0, $1, $2)', [appliedSum.toString(), applied.length]);

    await migrate(sql, CALCULATOR_SCHEMA, CALCULATOR_MIGRATIONS);
    await migrate(sql, TOTALS_SCHEMA, TOTALS_MIGRATIONS);

    const generations = async (table: string) =>
      (await sql.query<{ generation: number; rows: number }>(`SELECT generation, count(*)::int AS rows FROM ${table} GROUP BY generation ORDER BY 1`)).rows;
    assert.deepEqual(await generations('calculator.requests'), [{ generation: 0, rows: OLD_REQUESTS }], 'the old requests are generation 0');
    assert.deepEqual(await generations('totals.applied_events'), [{ generation: 0, rows: applied.length }], 'the old applied events are generation 0');
    assert.equal((await sql.query('SELECT 1 FROM calculator.outbox')).rowCount, unpublished.length, 'the outbox is untouched');

    const calculator = new SumRecorder(sql, { topic: 'sums', maxBatchSize: 50, maxConcurrentWrites: 2, maxQueued: 1_000 }, silent, createCalculatorMetrics(new Registry()), () => {});
    const store = new TotalsStore(sql);
    const retry = (r: (typeof old)[number]) => calculator.record({ requestId: r.requestId, num1: r.num1, num2: r.num2, sum: r.sum });
    const redeliver = (r: (typeof old)[number], offset: bigint) => {
      const event: SumAccepted = { eventId: r.eventId, requestId: r.requestId, num1: r.num1, num2: r.num2, sum: r.sum, acceptedAt: r.acceptedAt };
      return store.applyBatch('upgrade', [{ event, partition: 0, offset, source: { topic: 'sums', key: r.requestId, value: Buffer.from('{}') } }], [], []);
    };

    // Before any keeper ran: an old id replays, an old event is a duplicate, the pending ones apply.
    const replay = await retry(old[0]!);
    assert.deepEqual([replay.replayed, replay.sum], [true, old[0]!.sum]);
    assert.equal((await redeliver(applied[0]!, 1_000n)).duplicates, 1);
    assert.equal((await redeliver(unpublished[0]!, 1_001n)).applied, 1);
    const totalBefore = await store.readTotal();
    assert.equal(BigInt(totalBefore.total), appliedSum + unpublished[0]!.sum);

    const keepers = [
      new PeriodPartitions(sql, { schema: CALCULATOR_SCHEMA, table: 'requests', amountColumn: 'sum', windowSeconds: 1, periodSeconds: 0.5 }, silent),
      new PeriodPartitions(sql, { schema: TOTALS_SCHEMA, table: 'applied_events', amountColumn: 'amount', windowSeconds: 1, periodSeconds: 0.5 }, silent),
    ];
    const current = () => keepers.map((keeper) => keeper.snapshot()?.currentGeneration ?? -1);
    await stepUntil(keepers, async () => current().every((generation) => generation > 0));

    // Written to again in a later generation, the old rows still answer for their ids and events.
    const later = await retry(old[1]!);
    assert.deepEqual([later.replayed, later.sum], [true, old[1]!.sum]);
    assert.equal((await redeliver(applied[1]!, 1_002n)).duplicates, 1);
    assert.equal((await redeliver(unpublished[0]!, 1_003n)).duplicates, 1);
    assert.deepEqual(await store.readTotal(), totalBefore);

    const attached = async (parent: string) =>
      (await sql.query<{ name: string }>(`SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass`, [parent])).rows.map(
        (row) => row.name,
      );
    await stepUntil(keepers, async () => !(await attached('calculator.requests')).includes('requests_g0') && !(await attached('totals.applied_events')).includes('applied_events_g0'));
    const checkpoints = await sql.query<{ table_name: string; row_count: string; amount: string; dropped: boolean }>(
      `SELECT table_name, row_count::text, amount::text, dropped_at IS NOT NULL AS dropped FROM calculator.partitions WHERE generation = 0
       UNION ALL SELECT table_name, row_count::text, amount::text, dropped_at IS NOT NULL FROM totals.partitions WHERE generation = 0 ORDER BY 1`,
    );
    assert.deepEqual(checkpoints.rows, [
      { table_name: 'applied_events', row_count: String(applied.length + 1), amount: (appliedSum + unpublished[0]!.sum).toString(), dropped: true },
      { table_name: 'requests', row_count: String(OLD_REQUESTS), amount: old.reduce((total, r) => total + r.sum, 0n).toString(), dropped: true },
    ]);
    assert.equal((await sql.query(`SELECT 1 FROM pg_class WHERE relname IN ('requests_g0', 'applied_events_g0')`)).rowCount, 0, 'the tables are gone');

    // After the window: the old id is free, the old event is kept back, and the total is untouched.
    const reused = await calculator.record({ requestId: old[2]!.requestId, num1: 5n, num2: 6n, sum: 11n });
    assert.deepEqual([reused.replayed, reused.sum], [false, 11n]);
    const tooOld = await redeliver(applied[2]!, 1_004n);
    assert.deepEqual([tooOld.applied, tooOld.tooOld.length], [0, 1]);
    const { rows: parked } = await sql.query<{ reason: string; event_id: string }>('SELECT reason, event_id::text FROM totals.rejected_records WHERE kafka_offset = 1004');
    assert.equal(parked[0]?.event_id, applied[2]!.eventId);
    assert.ok(parked[0]!.reason.startsWith(TOO_OLD_REASON));
    assert.deepEqual(await store.readTotal(), totalBefore, 'the total outlives the rows it sums');
  });
});
