import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createPool, inTransaction, type Pool } from '../../src/platform/db/pool.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

describe('database pool against real PostgreSQL', () => {
  let database: TestDatabase;
  let pool: Pool;
  let admin: pg.Client;

  before(async () => {
    database = await createTestDatabase('pool');
    pool = createPool(database.url, { max: 2, applicationName: 'summa-pool-test' });
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
  });

  after(async () => {
    await admin?.end();
    await pool?.end();
    await database?.drop();
  });

  it('survives losing a checked-out connection between two queries, and drops it', async () => {
    const client = await pool.connect();
    await client.query('BEGIN');
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    // The server ends the session while the client is held but idle (as during a Kafka publish).
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await assert.rejects(client.query('SELECT 1'));
    client.release();

    // The pool goes on with a fresh connection.
    const fresh = await inTransaction(pool, (c) => c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'));
    assert.notEqual(fresh.rows[0]!.pid, rows[0]!.pid);
  });

  it('sets a server-side statement timeout and idle-in-transaction timeout on every connection', async () => {
    const settings = await pool.query<{ statement: string; idle: string }>(
      `SELECT current_setting('statement_timeout') AS statement, current_setting('idle_in_transaction_session_timeout') AS idle`,
    );
    assert.notEqual(settings.rows[0]!.statement, '0', 'a statement may not run forever');
    assert.notEqual(settings.rows[0]!.idle, '0', 'a transaction may not stay open forever');
  });

  it('has the server cancel a statement before the client gives up on it, so a timeout means "not committed"', async () => {
    const quick = createPool(database.url, { max: 1, applicationName: 'summa-pool-timeout', queryTimeoutMs: 1_500 });
    try {
      const startedAt = Date.now();
      await assert.rejects(quick.query('SELECT pg_sleep(10)'), (error: { code?: string }) => error.code === '57014');
      assert.ok(Date.now() - startedAt < 1_500, 'cancelled by the server within the client timeout');
    } finally {
      await quick.end();
    }
  });
});
