import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
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

/** Keeper steps until `done` holds or `timeoutMs` passes. */
async function stepUntil(keeper: PeriodPartitions, done: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await keeper.step();
    if (await done()) return;
    if (Date.now() > deadline) throw new Error('the keeper did not get there in time');
    await sleep(50);
  }
}

describe('bounded state: partitions by period, against real PostgreSQL', () => {
  let database: TestDatabase;
  let sql: pg.Pool;

  before(async () => {
    database = await createTestDatabase('retention');
    sql = new pg.Pool({ connectionString: database.url, max: 12 });
    await migrate(sql, CALCULATOR_SCHEMA, CALCULATOR_MIGRATIONS);
    await migrate(sql, TOTALS_SCHEMA, TOTALS_MIGRATIONS);
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
  });

  const recorder = (pool = sql) =>
    new SumRecorder(pool, { topic: 'sums', maxBatchSize: 50, maxConcurrentWrites: 2, maxQueued: 1_000 }, silent, createCalculatorMetrics(new Registry()), () => {});

  const attached = async (parent: string) =>
    (await sql.query<{ name: string }>(`SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1`, [parent])).rows.map(
      (row) => row.name,
    );

  it('replays an id within the idempotency window; after it the partition is dropped and the id is new', async () => {
    const keeper = new PeriodPartitions(sql, { schema: CALCULATOR_SCHEMA, table: 'requests', amountColumn: 'sum', windowSeconds: 1, periodSeconds: 0.5 }, silent);
    const calculator = recorder();
    const first = await calculator.record({ requestId: 'kept-for-a-window', num1: 2n, num2: 3n, sum: 5n });
    assert.equal(first.replayed, false);
    await keeper.step();
    assert.ok((await attached('calculator.requests')).length >= 3, 'partitions are made ahead');
    const again = await calculator.record({ requestId: 'kept-for-a-window', num1: 2n, num2: 3n, sum: 5n });
    assert.equal(again.replayed, true, 'a retry within the window replays');

    const generationOf = async () =>
      (await sql.query<{ generation: number }>(`SELECT generation FROM calculator.requests WHERE request_id = 'kept-for-a-window'`)).rows.map((r) => r.generation);
    const [original] = await generationOf();
    // The writes move on; the retry, now in a later period than the original, still replays.
    await stepUntil(keeper, async () => (keeper.snapshot()?.currentGeneration ?? -1) > original!);
    const later = await calculator.record({ requestId: 'kept-for-a-window', num1: 2n, num2: 3n, sum: 5n });
    assert.equal(later.replayed, true, 'a retry in a later period replays');
    assert.deepEqual(await generationOf(), [original], 'and is not recorded again');

    // Once the original's period is older than the window, its partition goes, and with it the id.
    await stepUntil(keeper, async () => !(await attached('calculator.requests')).includes(`requests_g${original}`));
    assert.deepEqual(await generationOf(), []);
    const { rows: catalogue } = await sql.query<{ row_count: string; amount: string; dropped: boolean }>(
      `SELECT row_count::text, amount::text, dropped_at IS NOT NULL AS dropped FROM calculator.partitions WHERE table_name = 'requests' AND generation = $1`,
      [original],
    );
    assert.equal(catalogue[0]!.dropped, true);
    assert.ok(Number(catalogue[0]!.row_count) >= 1, 'the checkpoint counted its rows');
    const reused = await calculator.record({ requestId: 'kept-for-a-window', num1: 10n, num2: 1n, sum: 11n });
    assert.equal(reused.replayed, false, 'after the window the id is free: a new request');
    assert.equal(reused.sum, 11n);
    const snapshot = keeper.snapshot()!;
    assert.ok(snapshot.rowsDropped >= 1 && snapshot.partitionsAhead >= 1 && snapshot.partitionsOverdue === 0, JSON.stringify(snapshot));
  });

  // The reason periods are generations switched under a lock: a retry must never be recorded a
  // second time because its original was still being written into the previous partition.
  it('records each id once while the writes move from partition to partition under concurrent retries', async () => {
    const keeper = new PeriodPartitions(sql, { schema: CALCULATOR_SCHEMA, table: 'requests', amountColumn: 'sum', windowSeconds: 3600, periodSeconds: 0.02, ahead: 3 }, silent);
    const pools = [new pg.Pool({ connectionString: database.url, max: 3 }), new pg.Pool({ connectionString: database.url, max: 3 })];
    const writers = pools.map((pool) => recorder(pool));
    const ids = Array.from({ length: 400 }, (_, i) => `straddle-${i}-${randomUUID()}`);
    let switching = true;
    const switches = (async () => {
      while (switching) {
        await keeper.step();
        await sleep(2);
      }
    })();
    // Every write takes 30 ms after choosing its partition, so that switches fall inside writes.
    await sql.query(`CREATE FUNCTION calculator.slow_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN NULL; END $$`);
    await sql.query('CREATE TRIGGER slow_write AFTER INSERT ON calculator.outbox FOR EACH STATEMENT EXECUTE FUNCTION calculator.slow_write()');
    try {
      const generationsBefore = keeper.snapshot()?.currentGeneration ?? 0;
      for (let i = 0; i < ids.length; i += 20) {
        const chunk = ids.slice(i, i + 20);
        // Each id sent by one calculator, and again by the other while the first is being written.
        const first = Promise.all(chunk.map((requestId) => writers[0]!.record({ requestId, num1: 1n, num2: 1n, sum: 2n })));
        await sleep(12);
        await Promise.all([first, ...chunk.map((requestId) => writers[1]!.record({ requestId, num1: 1n, num2: 1n, sum: 2n }))]);
      }
      switching = false;
      await switches;
      assert.ok((keeper.snapshot()?.currentGeneration ?? 0) - generationsBefore >= 5, 'the writes moved across several partitions');
      const { rows } = await sql.query<{ request_id: string; rows: number; events: number }>(
        `SELECT r.request_id, count(*)::int AS rows, (SELECT count(*) FROM calculator.outbox o WHERE o.message_key = r.request_id)::int AS events
         FROM calculator.requests r WHERE r.request_id = ANY($1) GROUP BY r.request_id`,
        [ids],
      );
      assert.equal(rows.length, ids.length);
      const twice = rows.filter((row) => row.rows !== 1 || row.events !== 1);
      assert.deepEqual(twice, [], 'every id recorded once, with one event');
    } finally {
      switching = false;
      await switches;
      await Promise.all(pools.map((pool) => pool.end()));
      await sql.query('DROP TRIGGER IF EXISTS slow_write ON calculator.outbox');
      await sql.query('DROP FUNCTION IF EXISTS calculator.slow_write()');
    }
  });

  it('quarantines an event older than the dedup window instead of applying it again; the total survives the drop', async () => {
    const keeper = new PeriodPartitions(sql, { schema: TOTALS_SCHEMA, table: 'applied_events', amountColumn: 'amount', windowSeconds: 1, periodSeconds: 0.5 }, silent);
    const store = new TotalsStore(sql);
    const event = (sum: bigint, acceptedAt = new Date()): SumAccepted => ({ eventId: randomUUID(), requestId: `r-${randomUUID()}`, num1: sum, num2: 0n, sum, acceptedAt });
    const early = event(7n);
    const before = await store.readTotal();
    const applied = await store.applyBatch('retention', [{ event: early, partition: 0, offset: 1n }], [], []);
    assert.equal(applied.applied, 1);
    const generation = (
      await sql.query<{ generation: number }>('SELECT generation FROM totals.applied_events WHERE event_id = $1', [early.eventId])
    ).rows[0]!.generation;
    await stepUntil(keeper, async () => !(await attached('totals.applied_events')).includes(`applied_events_g${generation}`));
    const after = await store.readTotal();
    assert.equal(BigInt(after.total) - BigInt(before.total), 7n, 'the total outlives the rows it sums');
    assert.equal(after.count - before.count, 1);

    // Delivered again after its partition was dropped: it may have been applied, so it is kept back;
    // a new event of the same batch is applied, and the batch's offsets are saved with both.
    const offsetsOf = async () =>
      (await sql.query<{ next_offset: string }>(`SELECT next_offset::text FROM totals.consumer_offsets WHERE group_id = 'retention' AND partition = 0`)).rows.map((row) => row.next_offset);
    const beside = event(11n);
    const again = await store.applyBatch(
      'retention',
      [
        { event: early, partition: 0, offset: 2n, source: { topic: 'sums', key: early.requestId, value: Buffer.from('{}') } },
        { event: beside, partition: 0, offset: 3n },
      ],
      [],
      [{ topic: 'sums', topicId: 'topic-id', partition: 0, nextOffset: 4n }],
    );
    assert.equal(again.applied, 1);
    assert.deepEqual(again.tooOld.map((e) => e.event.eventId), [early.eventId]);
    assert.deepEqual(await offsetsOf(), ['4']);
    assert.equal(BigInt((await store.readTotal()).total) - BigInt(after.total), 11n, 'the new event of the batch, and only it, is added');
    const { rows: parked } = await sql.query<{ reason: string; event_id: string }>(
      'SELECT reason, event_id::text FROM totals.rejected_records WHERE kafka_partition = 0 AND kafka_offset = 2',
    );
    assert.equal(parked[0]?.event_id, early.eventId);
    assert.ok(parked[0]!.reason.startsWith(TOO_OLD_REASON), parked[0]!.reason);
    // The quarantined one again, alone: nothing added, and its offset saved all the same.
    const third = await store.applyBatch('retention', [{ event: early, partition: 0, offset: 4n, source: { topic: 'sums', key: early.requestId, value: Buffer.from('{}') } }], [], [
      { topic: 'sums', topicId: 'topic-id', partition: 0, nextOffset: 5n },
    ]);
    assert.equal(third.applied, 0);
    assert.equal(BigInt((await store.readTotal()).total) - BigInt(after.total), 11n, 'nothing added');
    assert.deepEqual(await offsetsOf(), ['5']);

    // A new event, accepted after everything dropped, is applied as usual, with its offset.
    const fresh = await store.applyBatch('retention', [{ event: event(5n), partition: 0, offset: 5n }], [], [{ topic: 'sums', topicId: 'topic-id', partition: 0, nextOffset: 6n }]);
    assert.equal(fresh.applied, 1);
    assert.equal(BigInt((await store.readTotal()).total) - BigInt(after.total), 16n);
    assert.deepEqual(await offsetsOf(), ['6']);
  });
});

describe('the partition keeper when its maintenance fails', () => {
  let database: TestDatabase;
  let sql: pg.Pool;

  before(async () => {
    database = await createTestDatabase('retention_failing');
    sql = new pg.Pool({ connectionString: database.url, max: 4 });
    await migrate(sql, CALCULATOR_SCHEMA, CALCULATOR_MIGRATIONS);
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
  });

  it('still measures, so the gauges show what is wrong instead of its last good step', async () => {
    const keeper = new PeriodPartitions(sql, { schema: CALCULATOR_SCHEMA, table: 'requests', amountColumn: 'sum', windowSeconds: 1, periodSeconds: 0.2 }, silent);
    await keeper.step();
    assert.equal(keeper.snapshot()!.currentGeneration, 0);
    // A catalogue without a current generation: every step fails at its first part.
    await sql.query(`UPDATE calculator.partitions SET ended_at = now() WHERE table_name = 'requests' AND ended_at IS NULL AND started_at IS NOT NULL`);
    await assert.rejects(keeper.step(), /no current generation/);
    assert.equal(keeper.snapshot()!.currentGeneration, -1, 'the snapshot was taken after the failure');
  });
});

describe('the partition keeper of an instance that finds another one keeping the table', () => {
  let database: TestDatabase;
  let sql: pg.Pool;

  before(async () => {
    database = await createTestDatabase('retention_second_keeper');
    sql = new pg.Pool({ connectionString: database.url, max: 6 });
    await migrate(sql, CALCULATOR_SCHEMA, CALCULATOR_MIGRATIONS);
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
  });

  it('looks again soon when what it saw was a problem, instead of showing it for a whole interval', async () => {
    const options = { schema: CALCULATOR_SCHEMA, table: 'requests', amountColumn: 'sum', windowSeconds: 7 * 86_400, periodSeconds: 86_400 };
    // Another instance holds the keeper's lock at start-up, before it has made any partition ahead.
    const holder = await sql.connect();
    await holder.query('SELECT pg_advisory_lock(hashtext($1))', ['summa:partitions:calculator.requests']);
    const second = new PeriodPartitions(sql, options, silent);
    assert.equal(second.intervalMs, 60_000, 'a day-long period steps once a minute');
    second.start();
    try {
      const deadline = Date.now() + 10_000;
      while (!second.snapshot() && Date.now() < deadline) await sleep(20);
      assert.equal(second.snapshot()?.partitionsAhead, 0, 'it measured while the other instance had made nothing yet');

      // The other instance makes the partitions ahead; the second keeper's gauges follow within seconds.
      await holder.query('SELECT pg_advisory_unlock(hashtext($1))', ['summa:partitions:calculator.requests']);
      await new PeriodPartitions(sql, options, silent).step();
      const seen = Date.now() + 5_000;
      while (second.snapshot()!.partitionsAhead === 0 && Date.now() < seen) await sleep(50);
      assert.equal(second.snapshot()!.partitionsAhead, 2, 'the second keeper saw the partitions made ahead');
    } finally {
      holder.release();
      await second.stop();
    }
  });
});
