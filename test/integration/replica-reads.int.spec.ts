// A real streaming replica of a PostgreSQL server of this test's own (the suite's server stays a
// plain primary), and the totals service reading GET /total from it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { inTransaction } from '../../src/platform/db/pool.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { readTotalsConfig } from '../../src/totals/config.ts';
import { applyEvents } from '../../src/totals/totals-store.ts';
import { startTotals, type RunningTotals } from '../../src/totals/totals-service.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { startPostgresReplica, type PostgresReplica } from '../../tools/local-stack/postgres-replica.ts';
import { startPostgresServer, type PostgresServer } from '../../tools/local-stack/postgres-server.ts';
import { testKafkaBrokers, uniqueName } from '../support/test-environment.ts';

const logger = createLogger('replica-reads-test', { LOG_LEVEL: 'silent' });

describe('reads from a streaming replica', { timeout: 120_000 }, () => {
  let dir: string;
  let primary: PostgresServer | undefined;
  let replica: PostgresReplica | undefined;
  let totals: RunningTotals | undefined;
  let onPrimary: pg.Pool;
  let onReplica: pg.Pool;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'summa-replica-'));
    // As root the servers run as "postgres", which must be able to enter it.
    await chmod(dir, 0o755);
    primary = await startPostgresServer({ dataDir: path.join(dir, 'primary'), port: await freePort() });
    await primary.ensureDatabase('summa');
    replica = await startPostgresReplica({ primary, dataDir: path.join(dir, 'replica'), port: await freePort() });
    onPrimary = new pg.Pool({ connectionString: primary.url('summa'), max: 2 });
    onReplica = new pg.Pool({ connectionString: replica.url('summa'), max: 2 });
    // The replica is stopped below: its idle connections end with an error nobody else hears.
    onReplica.on('error', () => {});
    totals = await startTotals(
      readTotalsConfig({
        TOTALS_HTTP_PORT: '0',
        DATABASE_URL: primary.url('summa'),
        TOTALS_READ_DATABASE_URL: replica.url('summa'),
        KAFKA_BROKERS: testKafkaBrokers().join(','),
        KAFKA_TOPIC: uniqueName('replica-reads'),
        KAFKA_TOPIC_PARTITIONS: '1',
        TOTALS_GROUP_ID: uniqueName('replica-reads'),
        SHUTDOWN_DELAY_MS: '0',
      }),
      logger,
    );
    await replica.waitForCatchUp();
  });

  after(async () => {
    await totals?.stop();
    await onPrimary?.end();
    await onReplica?.end();
    await replica?.stop();
    await primary?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Applies one sum on the primary the way the consumer does. */
  const applySum = (requestId: string, sum: bigint) =>
    inTransaction(onPrimary, (client) =>
      applyEvents(client, [{ event: { eventId: randomUUID(), requestId, num1: sum, num2: 0n, sum, acceptedAt: new Date() }, partition: 0, offset: 0n }]),
    );
  const primaryTotal = async () => (await onPrimary.query<{ total: string }>('SELECT total::text AS total FROM totals.total')).rows[0]!.total;
  const get = async (query = '') => {
    const response = await fetch(`http://127.0.0.1:${totals!.httpPort}/total${query}`);
    return { status: response.status, headers: response.headers, body: (await response.json()) as any };
  };
  /** Replay on the replica stops (it still receives WAL), so the primary moves ahead of it. */
  const pauseReplay = () => onReplica.query('SELECT pg_wal_replay_pause()');
  const resumeReplay = () => onReplica.query('SELECT pg_wal_replay_resume()');

  it('shows a row written on the primary, and reports its lag from both sides', async () => {
    await onPrimary.query('CREATE TABLE replicated (id int PRIMARY KEY, note text)');
    await onPrimary.query(`INSERT INTO replicated VALUES (1, 'from the primary')`);
    await replica!.waitForCatchUp();
    const { rows } = await onReplica.query('SELECT note FROM replicated WHERE id = 1');
    assert.deepEqual(rows, [{ note: 'from the primary' }]);
    await assert.rejects(onReplica.query(`INSERT INTO replicated VALUES (2, 'x')`), /read-only transaction/);

    const lag = await replica!.lag();
    assert.equal(lag.inRecovery, true);
    assert.equal(lag.streaming, true);
    assert.equal(lag.bytes, 0);
    assert.ok(lag.seconds !== null && lag.seconds >= 0 && lag.seconds < 5, `lag ${lag.seconds} s`);
    const standby = await replica!.standbyStatus();
    assert.equal(standby?.state, 'streaming');
    assert.ok(standby!.replayLagBytes >= 0 && standby!.replayLagSeconds >= 0 && standby!.replayLagSeconds < 5);

    // The replica behind: what it has received but not replayed shows as lag.
    await pauseReplay();
    try {
      await onPrimary.query(`INSERT INTO replicated SELECT g, repeat('x', 100) FROM generate_series(2, 2000) g`);
      const deadline = Date.now() + 10_000;
      let behind = await replica!.lag();
      while ((behind.bytes ?? 0) === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        behind = await replica!.lag();
      }
      assert.ok(behind.bytes! > 0, 'received WAL waits for replay');
      assert.ok(behind.seconds! > 0, 'and its age shows');
      assert.ok((await replica!.standbyStatus())!.replayLagBytes > 0, 'the primary sees it too');
    } finally {
      await resumeReplay();
    }
    await replica!.waitForCatchUp();
    assert.equal((await onReplica.query('SELECT count(*)::int AS n FROM replicated')).rows[0].n, 2000);
  });

  it('serves GET /total from the replica, saying so and how far behind it is', async () => {
    await applySum(uniqueName('first'), 5n);
    await replica!.waitForCatchUp();
    const { status, headers, body } = await get();
    assert.equal(status, 200);
    assert.deepEqual(body, { total: await primaryTotal(), count: 1 });
    assert.equal(headers.get('summa-read-source'), 'replica');
    assert.match(headers.get('summa-replica-lag-ms') ?? '', /^\d+$/);
    assert.equal(headers.get('summa-replica-lag-bytes'), '0');
    const summation = await fetch(`http://127.0.0.1:${totals!.httpPort}/summation`);
    assert.equal(summation.headers.get('summa-read-source'), 'replica');

    const metrics = await (await fetch(`http://127.0.0.1:${totals!.httpPort}/metrics`)).text();
    assert.match(metrics, /^summa_totals_replica_up\{[^}]*\} 1$/m);
    assert.match(metrics, /^summa_totals_replica_lag_seconds\{[^}]*\} [\d.e-]+$/m);
    assert.match(metrics, /^summa_totals_reads_total\{[^}]*source="replica"[^}]*\} [1-9]/m);
  });

  it('reads the primary for ?consistency=strong, ahead of a replica that lags', async () => {
    await pauseReplay();
    try {
      await applySum(uniqueName('strong'), 7n);
      const strong = await get('?consistency=strong');
      assert.equal(strong.headers.get('summa-read-source'), 'primary');
      assert.equal(strong.headers.get('summa-replica-lag-ms'), null);
      assert.equal(strong.body.total, await primaryTotal());
      const eventual = await get();
      assert.equal(eventual.headers.get('summa-read-source'), 'replica');
      assert.equal(BigInt(eventual.body.total), BigInt(strong.body.total) - 7n, 'the replica has not replayed the last sum');
    } finally {
      await resumeReplay();
    }
    await replica!.waitForCatchUp();
  });

  it('answers ?after=<requestId> only once that request is in the total it reads', async () => {
    const requestId = uniqueName('after');
    await pauseReplay();
    let answered = false;
    const waiting = get(`?after=${encodeURIComponent(requestId)}&timeoutMs=20000`).finally(() => (answered = true));
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(answered, false, 'nothing to answer before the request is applied');
      await applySum(requestId, 11n);
      // Applied on the primary, but not yet on the replica it reads.
      await new Promise((resolve) => setTimeout(resolve, 400));
      assert.equal(answered, false, 'the replica has not replayed it yet');
    } finally {
      await resumeReplay();
    }
    const { status, headers, body } = await waiting;
    assert.equal(status, 200);
    assert.equal(headers.get('summa-read-source'), 'replica');
    assert.equal(body.total, await primaryTotal(), 'the total it answers holds the request');

    // Already applied: at once.
    const again = await get(`?after=${encodeURIComponent(requestId)}&timeoutMs=0`);
    assert.equal(again.status, 200);
  });

  it('times out ?after= for a request that never arrives with 504 naming it', async () => {
    const started = Date.now();
    const { status, body } = await get('?after=never-sent&timeoutMs=300');
    assert.ok(Date.now() - started >= 300);
    assert.equal(status, 504);
    assert.equal(body.error.code, 'DEADLINE_EXCEEDED');
    assert.equal(body.error.requestId, 'never-sent');
    assert.match(body.error.message, /"never-sent" was not in the total within 300 ms/);
  });

  it('refuses bad query values with 400 and a message', async () => {
    for (const [query, message] of [
      ['?consistency=linearizable', /consistency must be "eventual" or "strong"/],
      ['?after=', /request id must not be empty/],
      ['?after=x&timeoutMs=31000', /timeoutMs must be a whole number of milliseconds from 0 to 30000/],
      ['?timeoutMs=10', /timeoutMs applies only with after/],
      ['?after=a&after=b', /after must be given once/],
      ['?consistancy=strong', /unknown query parameter "consistancy"/],
    ] as const) {
      const { status, body } = await get(query);
      assert.equal(status, 400, query);
      assert.equal(body.error.code, 'INVALID_ARGUMENT');
      assert.match(body.error.message, message, query);
    }
  });

  it('falls back to the primary while the replica is down, and reads it again once it is back', async () => {
    await replica!.kill();
    try {
      const { status, headers, body } = await get();
      assert.equal(status, 200);
      assert.equal(headers.get('summa-read-source'), 'primary');
      assert.equal(body.total, await primaryTotal());
      const metrics = await (await fetch(`http://127.0.0.1:${totals!.httpPort}/metrics`)).text();
      assert.match(metrics, /^summa_totals_replica_up\{[^}]*\} 0$/m);
      assert.match(metrics, /^summa_totals_reads_total\{[^}]*fallback="true"[^}]*\} [1-9]/m);
      const ready = await fetch(`http://127.0.0.1:${totals!.httpPort}/readyz`);
      assert.equal(ready.status, 200, 'a replica that is down does not make the service unready');
    } finally {
      await replica!.start();
    }
    await replica!.waitForCatchUp();
    const deadline = Date.now() + 10_000;
    let source = (await get()).headers.get('summa-read-source');
    while (source !== 'replica' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      source = (await get()).headers.get('summa-read-source');
    }
    assert.equal(source, 'replica');
  });

  it('starts an existing replica folder again as it is, and makes it anew only when it can no longer follow', async () => {
    const options = { primary: primary!, dataDir: path.join(dir, 'replica'), port: replica!.port };
    const marker = path.join(replica!.clusterDir, 'kept-across-restarts');
    const followsAgain = async (id: number) => {
      await onPrimary.query('INSERT INTO replicated VALUES ($1, $2)', [id, 'after a restart']);
      await replica!.waitForCatchUp();
      assert.equal((await onReplica.query('SELECT count(*)::int AS n FROM replicated WHERE id = $1', [id])).rows[0].n, 1);
    };
    await writeFile(marker, '');
    await replica!.stop();
    replica = await startPostgresReplica(options);
    assert.ok(existsSync(marker), 'the same folder, not a new copy');
    await followsAgain(10_001);

    // Without its slot the primary may have removed WAL the replica needs: it is copied anew.
    await replica.stop();
    await onPrimary.query(`SELECT pg_drop_replication_slot('summa_replica')`);
    replica = await startPostgresReplica(options);
    assert.ok(!existsSync(marker), 'a new copy');
    await followsAgain(10_002);
    assert.equal((await replica.standbyStatus())?.state, 'streaming');
  });
});
