import type Pg from 'pg';
import pg from './pg.ts';

export type Pool = Pg.Pool;
export type PoolClient = Pg.PoolClient;

export interface PoolOptions {
  max?: number;
  applicationName: string;
  /** How long to wait for a new connection before failing (default 3s). */
  connectTimeoutMs?: number;
  /** A query not answered within this long fails and its connection is dropped (default: no limit). */
  queryTimeoutMs?: number;
  /**
   * The server cancels a statement that runs this long (default: 500 ms under queryTimeoutMs, or
   * 30 s). Below the client's own timeout, so that a caller told "timed out" almost always faces a
   * statement the server rolled back, rather than one that may still commit after the answer.
   */
  statementTimeoutMs?: number;
  /** The server ends a session whose transaction sits idle this long (default 60 s). */
  idleInTransactionTimeoutMs?: number;
  /**
   * False: commits do not wait for the WAL flush (synchronous_commit=off for every session), for a
   * pool whose every write may be lost in a crash of PostgreSQL without harm. Default true.
   */
  synchronousCommit?: boolean;
}

const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;
const DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;

function statementTimeoutFor(options: PoolOptions): number {
  if (options.statementTimeoutMs !== undefined) return options.statementTimeoutMs;
  if (options.queryTimeoutMs !== undefined) return Math.max(100, options.queryTimeoutMs - 500);
  return DEFAULT_STATEMENT_TIMEOUT_MS;
}

/**
 * A pool that fails fast when PostgreSQL is unreachable: callers get an error within the connect
 * timeout instead of queueing without bound.
 */
export function createPool(connectionString: string, options: PoolOptions): Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 8,
    application_name: options.applicationName,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3_000,
    ...(options.queryTimeoutMs ? { query_timeout: options.queryTimeoutMs } : {}),
    // Sent with every new connection, so they hold for each statement without a round trip. A lost
    // client (a relay host that vanished mid-transaction) no longer holds its locks until TCP
    // keepalive notices.
    statement_timeout: statementTimeoutFor(options),
    idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs ?? DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    // plan_cache_mode: a prepared statement (prepared-statement.ts) is planned once per connection,
    // for any parameters. PostgreSQL would otherwise plan it again at each call for as long as it
    // reckons a plan made for the parameters cheaper to run, which for the calculator's write of a
    // few requests was every call: planning it cost as much as running it (BENCHMARKS.md). Other
    // statements are planned at each call as before.
    options: ['-c plan_cache_mode=force_generic_plan', ...(options.synchronousCommit === false ? ['-c synchronous_commit=off'] : [])].join(' '),
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  // A client that loses its connection emits 'error': the pool listens while the client is idle
  // (and emits it here), but nobody does while it is checked out, between two queries of a
  // transaction. Unheard, it would crash the process; heard, the loss surfaces as the next query's
  // error and the pool drops the broken client.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

export async function inTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
