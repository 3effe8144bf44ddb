import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { OutboxVacuum, vacuumDue } from '../../src/outbox/outbox-vacuum.ts';
import type { Pool } from '../../src/platform/db/pool.ts';

const options = { everyRows: 1_000, minIntervalMs: 1_000 };

describe('vacuumDue', () => {
  it('asks for a vacuum once enough rows were deleted', () => {
    assert.equal(vacuumDue(999, undefined, false, options), false);
    assert.equal(vacuumDue(1_000, undefined, false, options), true);
  });

  it('waits out the interval since the last vacuum, and never starts a second beside a running one', () => {
    assert.equal(vacuumDue(5_000, 999, false, options), false);
    assert.equal(vacuumDue(5_000, 1_000, false, options), true);
    assert.equal(vacuumDue(5_000, 60_000, true, options), false);
  });

  it('never vacuums with everyRows 0', () => {
    assert.equal(vacuumDue(1e9, undefined, false, { everyRows: 0, minIntervalMs: 0 }), false);
  });
});

describe('OutboxVacuum', () => {
  function heldPool() {
    const sent: string[] = [];
    const held: { resolve: () => void; reject: (error: Error) => void }[] = [];
    const pool = {
      query(sql: string) {
        sent.push(sql);
        return new Promise<void>((resolve, reject) => held.push({ resolve, reject }));
      },
    } as unknown as Pick<Pool, 'query'>;
    return { pool, sent, held };
  }

  it('vacuums the outbox table without waiting for another vacuum of it, one at a time, counting rows from the last one', async () => {
    const { pool, sent, held } = heldPool();
    let now = 0;
    const vacuum = new OutboxVacuum(pool, options, pino({ level: 'silent' }), () => now);
    vacuum.deleted(600);
    assert.deepEqual(sent, []);
    vacuum.deleted(600);
    assert.deepEqual(sent, ['VACUUM (SKIP_LOCKED) calculator.outbox']);
    now = 5_000;
    vacuum.deleted(2_000); // the first is still running
    assert.equal(sent.length, 1);
    held.shift()!.resolve();
    await vacuum.drain();
    vacuum.deleted(1); // 2,001 since the last vacuum started
    assert.equal(sent.length, 2);
  });

  it('logs a failed vacuum and goes on', async () => {
    const { pool, sent, held } = heldPool();
    const logged: { msg: string }[] = [];
    const vacuum = new OutboxVacuum(pool, { everyRows: 1, minIntervalMs: 0 }, pino({ level: 'warn' }, { write: (line: string) => logged.push(JSON.parse(line)) }));
    vacuum.deleted(1);
    held.shift()!.reject(new Error('permission denied'));
    await vacuum.drain();
    assert.match(logged[0]!.msg, /vacuuming the outbox failed/);
    vacuum.deleted(1);
    assert.equal(sent.length, 2);
  });
});
