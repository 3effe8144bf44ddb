import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { AddLoad, sleep, waitForTotalCount, type Attempt } from '../../tools/load/add-load.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

const SHUTDOWN_DELAY_MS = 1_500;

/** The failed attempts, those of an unexpected kind first. */
const summary = (attempts: Attempt[]) =>
  attempts
    .filter((a) => a.outcome !== 'ok')
    .sort((a, b) => Number(b.outcome === 'other') - Number(a.outcome === 'other'))
    .slice(0, 5)
    .map((a) => `${a.via} sent +${a.sentAt} ${a.outcome}: ${a.detail}`)
    .join('\n');

describe('graceful shutdown under a steady stream of Adds, with real processes', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let calculator: ServiceProcess;
  let relay: ServiceProcess;
  let totals: ServiceProcess;
  let calculatorUrl: string;
  let totalsUrl: string;
  let load: AddLoad;

  before(async () => {
    database = await createTestDatabase('shutdown');
    sql = new pg.Pool({ connectionString: database.url, max: 2 });
    const where = await serviceEnvironment({ name: 'shutdown', databaseUrl: database.url });
    ({ calculatorUrl, totalsUrl } = where);
    const env = { ...where.env, RELAY_BATCH_SIZE: '50', TOTALS_BATCH_SIZE: '50' };
    calculator = new ServiceProcess('calculator', { ...env, SHUTDOWN_DELAY_MS: String(SHUTDOWN_DELAY_MS) }, `${calculatorUrl}/readyz`);
    relay = new ServiceProcess('relay', env, `${where.relayUrl}/readyz`);
    totals = new ServiceProcess('totals', env, `${totalsUrl}/readyz`);
    await calculator.start();
    await Promise.all([relay.start(), totals.start()]);
    load = new AddLoad({ grpcAddress: where.grpcAddress, httpUrl: calculatorUrl, grpcWorkers: 6, httpWorkers: 3 });
  });

  after(async () => {
    await load?.stop();
    await Promise.all([calculator?.stop(), relay?.stop(), totals?.stop()]);
    await sql?.end();
    await database?.drop();
  });

  it('SIGTERM on the calculator: readiness 503 during the drain, every call sent before the listeners closed answered, exit 0', async () => {
    load.start();
    await sleep(1_500);

    const signalAt = Date.now();
    const exited = calculator.stop();
    const readiness: Array<{ at: number; status: number | 'refused' }> = [];
    let done = false;
    void exited.then(() => (done = true));
    while (!done) {
      const status = await fetch(`${calculatorUrl}/readyz`).then((r) => r.status, () => 'refused' as const);
      readiness.push({ at: Date.now() - signalAt, status });
      await sleep(100);
    }
    const exitCode = await exited;
    const exitedAt = Date.now();
    await sleep(500); // calls against a stopped calculator: refused, and told so at once

    // The new process may answer a little before its readiness is seen, so "down" ends when it is
    // spawned, not when start() returns.
    const restartingAt = Date.now();
    await calculator.start();
    const restartedAt = Date.now();
    await sleep(1_500);

    assert.equal(exitCode, 0, calculator.logs);
    // The signal takes a moment to reach the process; from the first 503 on, readiness stays false.
    const firstNotReady = readiness.findIndex((r) => r.status !== 200);
    assert.ok(firstNotReady >= 0 && readiness[firstNotReady]!.at < 500, `readiness never turned false soon: ${JSON.stringify(readiness)}`);
    const during = readiness.slice(firstNotReady).filter((r) => r.at < SHUTDOWN_DELAY_MS - 200);
    assert.ok(during.length >= 3, JSON.stringify(readiness));
    assert.ok(during.every((r) => r.status === 503), `readiness while draining: ${JSON.stringify(readiness)}`);
    assert.ok(readiness.slice(firstNotReady).every((r) => r.status !== 200), `readiness came back: ${JSON.stringify(readiness)}`);

    const attempts = [...load.attempts];
    const beforeSignal = attempts.filter((a) => a.sentAt < signalAt);
    // Sent while readiness was already false but the listeners were still open (the delay): a load
    // balancer that had not noticed yet still gets its answers.
    const duringDelay = attempts.filter((a) => a.sentAt >= signalAt && a.sentAt < signalAt + SHUTDOWN_DELAY_MS - 300);
    const afterClose = attempts.filter((a) => a.sentAt >= signalAt + SHUTDOWN_DELAY_MS - 300);
    assert.ok(beforeSignal.length > 50, `only ${beforeSignal.length} calls before the signal`);
    assert.ok(beforeSignal.some((a) => a.via === 'http') && beforeSignal.some((a) => a.via === 'grpc'));
    assert.ok(beforeSignal.every((a) => a.outcome === 'ok'), summary(beforeSignal));
    assert.ok(duringDelay.length > 20, `only ${duringDelay.length} calls during the delay`);
    assert.ok(duringDelay.every((a) => a.outcome === 'ok'), summary(duringDelay));
    // Once the listeners are closed, a call is either still answered (it got in first) or refused
    // cleanly: gRPC UNAVAILABLE, HTTP 503, or a refused connection. Nothing else.
    assert.ok(afterClose.every((a) => a.outcome !== 'other'), summary(afterClose));
    const whileDown = afterClose.filter((a) => a.sentAt > exitedAt && a.answeredAt < restartingAt);
    assert.ok(whileDown.length > 0 && whileDown.every((a) => a.outcome !== 'ok'), `while down: ${whileDown.length} calls, ${whileDown.filter((a) => a.outcome === 'ok').length} answered`);
    assert.ok(whileDown.every((a) => a.latencyMs < 2_000), 'a stopped calculator refuses at once');
    const afterRestart = attempts.filter((a) => a.sentAt > restartedAt + 1_000);
    assert.ok(afterRestart.length > 0 && afterRestart.every((a) => a.outcome === 'ok'), summary(afterRestart));

    // Every acknowledged request is recorded; nothing unacknowledged is.
    // Acknowledged before the query, so committed before it (the load goes on meanwhile).
    const acked = load.acked();
    const recorded = await sql.query<{ request_id: string }>('SELECT request_id FROM calculator.requests');
    const ids = new Set(recorded.rows.map((r) => r.request_id));
    for (const id of acked.keys()) assert.ok(ids.has(id), `acknowledged ${id} is not recorded`);
  });

  it('SIGTERM on the relay and on the consumer mid-stream: after restarts, nothing lost or counted twice', async () => {
    await sleep(1_000);
    assert.equal(await relay.stop(), 0, relay.logs);
    await sleep(1_000); // the outbox fills meanwhile
    await relay.start();
    await sleep(1_000);
    assert.equal(await totals.stop(), 0, totals.logs);
    await sleep(1_000);
    await totals.start();
    await sleep(1_000);
    // Both at once, too.
    const [relayCode, totalsCode] = await Promise.all([relay.stop(), totals.stop()]);
    assert.deepEqual([relayCode, totalsCode], [0, 0]);
    await Promise.all([relay.start(), totals.start()]);
    await sleep(1_000);
    await load.stop();

    const attempts = load.attempts;
    assert.ok(attempts.every((a) => a.outcome !== 'other'), summary(attempts));
    const acked = load.acked();
    const expected = [...acked.values()].reduce((sum, value) => sum + value, 0n);
    const settled = await waitForTotalCount(totalsUrl, acked.size);
    assert.equal(settled.count, acked.size);
    assert.equal(settled.total, expected.toString());

    const applied = await sql.query<{ request_id: string; times: string }>(
      'SELECT request_id, count(*) AS times FROM totals.applied_events GROUP BY request_id',
    );
    assert.equal(applied.rows.length, acked.size);
    assert.ok(applied.rows.every((row) => row.times === '1' && acked.has(row.request_id)));
    const outbox = await sql.query<{ pending: string }>('SELECT count(*) AS pending FROM calculator.outbox');
    assert.equal(outbox.rows[0]!.pending, '0');
  });
});
