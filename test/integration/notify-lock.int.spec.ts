// A transaction that sent a NOTIFY takes PostgreSQL's notify lock at COMMIT (PreCommit_Notify in
// async.c: one AccessExclusiveLock on "database 0" for the whole cluster) and holds it until its
// commit is over, WAL flush included, so that notifications queue in commit order. Every other
// committing transaction that notified waits for it: a calculator whose write transaction notifies
// commits one at a time with every other calculator. This file holds that lock the real way — a
// transaction that notified and whose commit waits for a synchronous standby that never comes — and
// shows that an Add still commits, and that the relays' wake-up goes out once the lock is free.
//
// It runs a PostgreSQL server of its own: synchronous_standby_names is one setting for the whole
// server, and the shared test server must not have commits that wait for a standby.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startCalculator, type RunningCalculator } from '../../src/calculator/calculator-service.ts';
import { readCalculatorConfig } from '../../src/calculator/config.ts';
import { OUTBOX_CHANNEL } from '../../src/calculator/schema.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { startPostgresServer, type PostgresServer } from '../../tools/local-stack/postgres-server.ts';

/** The lock PreCommit_Notify takes, as pg_locks shows it: pg_database's class id, object 0. */
const NOTIFY_LOCK = `locktype = 'object' AND classid = 'pg_database'::regclass AND objid = 0 AND mode = 'AccessExclusiveLock'`;

/** `promise`'s value, or 'timed out' if it takes longer than `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timed out'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timed out'>((resolve) => (timer = setTimeout(() => resolve('timed out'), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe("the calculator's commits and PostgreSQL's notify lock", { timeout: 120_000 }, () => {
  let dataDir: string;
  let server: PostgresServer;
  let admin: pg.Client;
  let listener: pg.Client;
  let calculator: RunningCalculator | undefined;
  const notifications: string[] = [];

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-notify-lock-'));
    server = await startPostgresServer({ dataDir, port: await freePort() });
    await server.ensureDatabase('summa');
    admin = new pg.Client({ connectionString: server.url('summa') });
    await admin.connect();
    listener = new pg.Client({ connectionString: server.url('summa') });
    await listener.connect();
    listener.on('notification', (message) => notifications.push(message.channel));
    await listener.query(`LISTEN ${OUTBOX_CHANNEL}`);
  });

  after(async () => {
    await releaseStandbyWait().catch(() => {});
    await calculator?.stop();
    await listener?.end();
    await admin?.end();
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Commits with synchronous_commit=on now wait for a standby that never connects; others do not wait. */
  async function makeStandbyWaitPossible(): Promise<void> {
    await admin.query(`ALTER SYSTEM SET synchronous_standby_names = 'summa_never_connects'`);
    await admin.query(`ALTER SYSTEM SET synchronous_commit = 'local'`);
    await admin.query('SELECT pg_reload_conf()');
  }

  /** With no synchronous standby named, the commits waiting for one go on. */
  async function releaseStandbyWait(): Promise<void> {
    await admin.query('ALTER SYSTEM RESET synchronous_standby_names');
    await admin.query('SELECT pg_reload_conf()');
  }

  /** A session that notified and whose COMMIT is stuck holding the notify lock; resolves once it is. */
  async function holdNotifyLock(): Promise<{ committed: Promise<unknown>; end: () => Promise<void> }> {
    const holder = new pg.Client({ connectionString: server.url('summa'), application_name: 'notify-lock-holder' });
    await holder.connect();
    await holder.query('SET synchronous_commit = on');
    await holder.query('BEGIN');
    await holder.query('CREATE TEMP TABLE written (x int)'); // a transaction with an xid writes a commit record, and waits for it
    await holder.query(`SELECT pg_notify('some_other_channel', '')`);
    const committed = holder.query('COMMIT');
    committed.catch(() => {});
    const deadline = Date.now() + 10_000;
    while ((await admin.query(`SELECT 1 FROM pg_locks WHERE ${NOTIFY_LOCK} AND granted`)).rowCount === 0) {
      assert.ok(Date.now() < deadline, 'the holder never took the notify lock');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return { committed, end: () => holder.end() };
  }

  it('answers an Add while another session holds the notify lock, and wakes the relays once it is free', async () => {
    calculator = await startCalculator(
      readCalculatorConfig({ DATABASE_URL: server.url('summa'), CALCULATOR_GRPC_PORT: '0', CALCULATOR_HTTP_PORT: '0', KAFKA_TOPIC: 'notify-lock' }),
      createLogger('calculator', { LOG_LEVEL: 'silent' }),
    );
    await makeStandbyWaitPossible();
    const holder = await holdNotifyLock();
    try {
      notifications.length = 0;
      const answer = await within(
        fetch(`http://127.0.0.1:${calculator.httpPort}/v1/sums`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ num1: 2, num2: 3, requestId: 'while-locked' }),
        }),
        5_000,
      );
      assert.notEqual(answer, 'timed out', "the Add's commit waited for the notify lock");
      assert.equal((answer as Response).status, 201);
      const stored = await admin.query(`SELECT sum FROM calculator.requests WHERE request_id = 'while-locked'`);
      assert.equal(stored.rows[0]?.sum, '5');
      assert.equal(notifications.length, 0, 'nothing can notify while the lock is held');
    } finally {
      await releaseStandbyWait();
      await holder.committed.catch(() => {});
      await holder.end();
    }
    // The wake-up the calculator sent after its commit waited for the lock, and now goes out.
    const deadline = Date.now() + 10_000;
    while (!notifications.includes(OUTBOX_CHANNEL) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(notifications.includes(OUTBOX_CHANNEL), 'the relays were woken once the lock was free');
  });
});
