import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import type { SumAccepted } from '../../src/events/sum-accepted.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { TOTALS_MIGRATIONS, TOTALS_SCHEMA } from '../../src/totals/schema.ts';
import { applyEvents, TotalsStore, type EventAtOffset } from '../../src/totals/totals-store.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

function eventOn(partition: number, offset: bigint, num1: bigint, num2: bigint): EventAtOffset {
  const event: SumAccepted = { eventId: randomUUID(), requestId: randomUUID(), num1, num2, sum: num1 + num2, acceptedAt: new Date() };
  return { event, partition, offset };
}

const sumOf = (events: EventAtOffset[]) => events.reduce((total, e) => total + e.event.sum, 0n);

/** The total kept as one subtotal row per Kafka partition, against a real PostgreSQL. */
describe('totals kept per partition', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let store: TotalsStore;

  before(async () => {
    database = await createTestDatabase('partition_totals');
    sql = new pg.Pool({ connectionString: database.url, max: 4 });
    await migrate(sql, TOTALS_SCHEMA, TOTALS_MIGRATIONS);
    store = new TotalsStore(sql);
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
  });

  beforeEach(async () => {
    await sql.query('TRUNCATE totals.applied_events, totals.partition_totals');
  });

  it('applies events of different partitions in transactions that do not wait for each other', async () => {
    const first = eventOn(0, 0n, 5n, 6n);
    const second = eventOn(1, 0n, 7n, 8n);
    const holder = await sql.connect();
    const other = await sql.connect();
    try {
      await holder.query('BEGIN');
      assert.equal((await applyEvents(holder, [first])).applied, 1);
      // The first transaction is still open, holding whatever its apply locked.
      await other.query('BEGIN');
      await other.query("SET LOCAL lock_timeout = '500ms'");
      assert.equal((await applyEvents(other, [second])).applied, 1);
      await other.query('COMMIT');
      await holder.query('COMMIT');
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      await other.query('ROLLBACK').catch(() => {});
      holder.release();
      other.release();
    }
    assert.deepEqual(await store.readTotal(), { total: '26', count: 2 });
  });

  it('reads the total as the sum over partitions, each event once, beyond 64 bits', async () => {
    const big = 2n ** 62n;
    const events = [0, 1, 2, 0, 1, 2, 2].map((partition, i) => eventOn(partition, BigInt(i), big + BigInt(i), big - 3n));
    await store.applyBatch('partition-test', events.slice(0, 4), [], []);
    // A redelivery of two applied events beside three new ones: only the new ones count.
    const outcome = await store.applyBatch('partition-test', [events[1]!, events[3]!, ...events.slice(4)], [], []);
    assert.deepEqual([outcome.applied, outcome.duplicates], [3, 2]);

    const expected = sumOf(events);
    assert.ok(expected > 2n ** 64n);
    assert.deepEqual(await store.readTotal(), { total: expected.toString(), count: events.length });

    const { rows } = await sql.query<{ partition: number; total: string; count: string }>(
      'SELECT partition, total::text, count::text FROM totals.partition_totals ORDER BY partition',
    );
    assert.deepEqual(
      rows.map((r) => [r.partition, r.total, Number(r.count)]),
      [0, 1, 2].map((p) => {
        const of = events.filter((e) => e.partition === p);
        return [p, sumOf(of).toString(), of.length];
      }),
    );
    const view = await sql.query<{ id: number; total: string; count: string }>('SELECT id, total::text, count::text FROM totals.total');
    assert.deepEqual(view.rows, [{ id: 1, total: expected.toString(), count: String(events.length) }]);
  });

  it('reads a total of zero over no partition rows', async () => {
    assert.deepEqual(await store.readTotal(), { total: '0', count: 0 });
  });

  it('carries the total kept before partitions over as the row of partition -1', async () => {
    const earlier = await createTestDatabase('partition_totals_upgrade');
    const upgraded = new pg.Pool({ connectionString: earlier.url, max: 2 });
    const before = await mkdtemp(path.join(os.tmpdir(), 'summa-migrations-'));
    try {
      const files = (await readdir(TOTALS_MIGRATIONS)).filter((name) => Number.parseInt(name, 10) <= 4);
      for (const name of files) await cp(path.join(TOTALS_MIGRATIONS, name), path.join(before, name));
      await migrate(upgraded, TOTALS_SCHEMA, before);
      await upgraded.query('UPDATE totals.total SET total = 123456789012345678901234567890, count = 42 WHERE id = 1');

      await migrate(upgraded, TOTALS_SCHEMA, TOTALS_MIGRATIONS);
      const carried = await upgraded.query('SELECT partition, total::text, count::text FROM totals.partition_totals');
      assert.deepEqual(carried.rows, [{ partition: -1, total: '123456789012345678901234567890', count: '42' }]);

      const more = new TotalsStore(upgraded);
      await more.applyBatch('upgrade-test', [eventOn(3, 0n, 1n, 2n)], [], []);
      assert.deepEqual(await more.readTotal(), { total: '123456789012345678901234567893', count: 43 });
    } finally {
      await rm(before, { recursive: true, force: true });
      await upgraded.end();
      await earlier.drop();
    }
  });
});
