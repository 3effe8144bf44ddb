import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { pino } from 'pino';
import type { SumAccepted } from '../../src/events/sum-accepted.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { PeriodPartitions } from '../../src/platform/db/period-partitions.ts';
import { TOTALS_MIGRATIONS, TOTALS_SCHEMA } from '../../src/totals/schema.ts';
import { TotalsStore, type EventAtOffset } from '../../src/totals/totals-store.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

const silent = pino({ level: 'silent' });
const EVENTS = 400;
const CHUNK = 20;
const BATCHES_PER_CHUNK = 4;

describe('bounded state: applied events while their partitions switch, against real PostgreSQL', () => {
  let database: TestDatabase;
  let sql: pg.Pool;

  before(async () => {
    database = await createTestDatabase('retention_totals');
    sql = new pg.Pool({ connectionString: database.url, max: 4 });
    await migrate(sql, TOTALS_SCHEMA, TOTALS_MIGRATIONS);
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
  });

  // The same reason as the calculator's requests are switched under a lock: a record delivered to
  // two members of the group (a rebalance hands a partition over while the first still applies it)
  // must add to the total once, even when the second applies it just after the writes moved on.
  it('applies each event once, and the total stays exact, while the writes move from partition to partition under duplicate deliveries', async () => {
    const keeper = new PeriodPartitions(sql, { schema: TOTALS_SCHEMA, table: 'applied_events', amountColumn: 'amount', windowSeconds: 3600, periodSeconds: 0.02, ahead: 3 }, silent);
    const pools = [new pg.Pool({ connectionString: database.url, max: 3 }), new pg.Pool({ connectionString: database.url, max: 3 })];
    const members = pools.map((pool) => new TotalsStore(pool));
    const events: SumAccepted[] = Array.from({ length: EVENTS }, (_, i) => {
      const sum = BigInt(i + 1) * 1_000_003n;
      return { eventId: randomUUID(), requestId: `duplicate-delivery-${i}-${randomUUID()}`, num1: sum, num2: 0n, sum, acceptedAt: new Date() };
    });
    const before = await members[0]!.readTotal();
    let switching = true;
    await keeper.step();
    const generationsBefore = keeper.snapshot()!.currentGeneration;
    const switches = (async () => {
      while (switching) {
        await keeper.step();
        await sleep(2);
      }
    })();
    // Every batch takes 30 ms after choosing its partition, so that switches fall inside batches.
    await sql.query(`CREATE FUNCTION totals.slow_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN NULL; END $$`);
    await sql.query('CREATE TRIGGER slow_apply AFTER INSERT ON totals.consumer_offsets FOR EACH STATEMENT EXECUTE FUNCTION totals.slow_apply()');
    try {
      let offset = 0n;
      for (let i = 0; i < events.length; i += CHUNK) {
        const chunk = events.slice(i, i + CHUNK);
        // One batch per Kafka partition, as a consumer applies them; each batch applied by one member
        // and again by the other while the first is being written.
        const batches = Array.from({ length: BATCHES_PER_CHUNK }, (_, partition) =>
          chunk.filter((_, index) => index % BATCHES_PER_CHUNK === partition).map((event): EventAtOffset => ({ event, partition, offset: (offset += 1n) })),
        );
        const apply = (member: TotalsStore) =>
          batches.map((batch, partition) =>
            member.applyBatch('race', batch, [], [{ topic: 'sums', topicId: 'race-topic', partition, nextOffset: batch.at(-1)!.offset + 1n }]),
          );
        const first = Promise.all(apply(members[0]!));
        await sleep(12);
        await Promise.all([first, ...apply(members[1]!)]);
      }
      switching = false;
      await switches;
      assert.ok(keeper.snapshot()!.currentGeneration - generationsBefore >= 5, 'the writes moved across several partitions');

      const { rows } = await sql.query<{ event_id: string; times: number }>(
        'SELECT event_id::text, count(*)::int AS times FROM totals.applied_events WHERE event_id = ANY($1::uuid[]) GROUP BY event_id',
        [events.map((e) => e.eventId)],
      );
      assert.equal(rows.length, events.length, 'every event applied');
      const twice = rows.filter((row) => row.times !== 1);
      assert.equal(twice.length, 0, `${twice.length} event(s) applied more than once, e.g. ${JSON.stringify(twice.slice(0, 3))}`);
      const { rows: spread } = await sql.query<{ generations: number }>(
        'SELECT count(DISTINCT generation)::int AS generations FROM totals.applied_events WHERE event_id = ANY($1::uuid[])',
        [events.map((e) => e.eventId)],
      );
      assert.ok(spread[0]!.generations >= 5, `the events landed in ${spread[0]!.generations} partitions`);
      const afterTotal = await members[0]!.readTotal();
      const expected = events.reduce((total, event) => total + event.sum, 0n);
      assert.equal(BigInt(afterTotal.total) - BigInt(before.total), expected, 'the total adds each event once');
      assert.equal(afterTotal.count - before.count, events.length);
    } finally {
      switching = false;
      await switches;
      await Promise.all(pools.map((pool) => pool.end()));
      await sql.query('DROP TRIGGER IF EXISTS slow_apply ON totals.consumer_offsets');
      await sql.query('DROP FUNCTION IF EXISTS totals.slow_apply()');
    }
  });
});
