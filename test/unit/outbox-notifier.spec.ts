import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { OUTBOX_CHANNEL } from '../../src/calculator/schema.ts';
import { OutboxNotifier } from '../../src/outbox/outbox-notifier.ts';
import type { Pool } from '../../src/platform/db/pool.ts';

/** A pool whose statements wait until the test lets them go (or fail them). */
function heldPool() {
  const sent: { sql: string; params: unknown[] }[] = [];
  const held: { resolve: () => void; reject: (error: Error) => void }[] = [];
  let inFlight = 0;
  let peak = 0;
  const pool = {
    query(statement: { text: string; values: unknown[] }) {
      sent.push({ sql: statement.text, params: statement.values });
      inFlight += 1;
      peak = Math.max(peak, inFlight);
      return new Promise<void>((resolve, reject) => held.push({ resolve, reject })).finally(() => (inFlight -= 1));
    },
  } as unknown as Pick<Pool, 'query'>;
  const settle = async (error?: Error) => {
    const next = held.shift();
    assert.ok(next, 'no statement is in flight');
    if (error) next.reject(error);
    else next.resolve();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { pool, sent, settle, peak: () => peak, held };
}

describe('OutboxNotifier', () => {
  it('notifies on the channel the relays listen on, in a statement of its own', async () => {
    const { pool, sent, settle } = heldPool();
    const notifier = new OutboxNotifier(pool, pino({ level: 'silent' }));
    notifier.committed();
    assert.deepEqual(sent, [{ sql: `SELECT pg_notify($1, '')`, params: [OUTBOX_CHANNEL] }]);
    await settle();
    await notifier.drain();
  });

  it('keeps one NOTIFY in flight and folds the commits made meanwhile into one more after it', async () => {
    const { pool, sent, settle, peak, held } = heldPool();
    const notifier = new OutboxNotifier(pool, pino({ level: 'silent' }));
    notifier.committed();
    notifier.committed();
    notifier.committed();
    notifier.committed();
    assert.equal(sent.length, 1);
    await settle();
    assert.equal(sent.length, 2, 'one more for the commits made while the first was in flight');
    await settle();
    assert.equal(held.length, 0, 'nothing more: no commit came after the second was sent');
    notifier.committed();
    assert.equal(sent.length, 3, 'a commit after the last NOTIFY ended sends at once');
    await settle();
    await notifier.drain();
    assert.equal(peak(), 1);
  });

  it('logs a failed NOTIFY at debug level only, and notifies again on the next commit', async () => {
    const { pool, sent, settle } = heldPool();
    const logged: { level: number; msg: string }[] = [];
    const notifier = new OutboxNotifier(pool, pino({ level: 'debug' }, { write: (line: string) => logged.push(JSON.parse(line)) }));
    notifier.committed();
    await settle(new Error('connection terminated'));
    assert.deepEqual(logged.map((entry) => entry.level), [20], 'one debug line, no warning');
    notifier.committed();
    assert.equal(sent.length, 2);
    await settle();
    await notifier.drain();
  });

  it('drain() waits for the NOTIFY in flight and the one folded behind it', async () => {
    const { pool, settle } = heldPool();
    const notifier = new OutboxNotifier(pool, pino({ level: 'silent' }));
    notifier.committed();
    notifier.committed();
    let drained = false;
    const draining = notifier.drain().then(() => (drained = true));
    await settle();
    assert.equal(drained, false);
    await settle();
    await draining;
    assert.equal(drained, true);
  });
});
