import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it, mock } from 'node:test';
import pg from 'pg';
import { CALCULATOR_MIGRATIONS } from '../../src/calculator/schema.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { currentGenerationSql } from '../../src/platform/db/period-partitions.ts';
import { TOTALS_MIGRATIONS } from '../../src/totals/schema.ts';
import { auditInvariant, auditUntilQuiet, formatReport, type AuditOptions, type LostCandidate } from '../../src/cli/invariant-audit.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';
import { runSumma } from '../support/summa-cli.ts';

// Rows go into the generation written to now, as the services' writes do.
const REQUESTS_GENERATION = currentGenerationSql('calculator', 'requests');
const APPLIED_GENERATION = currentGenerationSql('totals', 'applied_events');

/** Writes what the pipeline writes, without running it: the audit only reads tables. */
async function accept(sql: pg.Pool, num1: bigint, num2: bigint, options: { published?: boolean; applied?: boolean; acceptedAgo?: string } = {}) {
  const requestId = randomUUID();
  const eventId = randomUUID();
  const sum = num1 + num2;
  await sql.query(
    `INSERT INTO calculator.requests (request_id, num1, num2, sum, event_id, accepted_at, generation)
     VALUES ($1, $2, $3, $4, $5, now() - $6::interval, ${REQUESTS_GENERATION})`,
    [requestId, num1.toString(), num2.toString(), sum.toString(), eventId, options.acceptedAgo ?? '5 minutes'],
  );
  if (!options.published) {
    await sql.query(`INSERT INTO calculator.outbox (event_id, topic, message_key, payload) VALUES ($1, 'sums', $2, '{}')`, [eventId, requestId]);
  }
  if (options.applied) await applyEvent(sql, eventId, requestId, sum);
  return { requestId, eventId, sum };
}

async function applyEvent(sql: pg.Pool, eventId: string, requestId: string, amount: bigint) {
  await sql.query(
    `WITH applied AS (
       INSERT INTO totals.applied_events (event_id, request_id, amount, accepted_at, kafka_partition, kafka_offset, generation)
       VALUES ($1, $2, $3, now(), 0, 0, ${APPLIED_GENERATION}) RETURNING amount, kafka_partition)
     INSERT INTO totals.partition_totals AS p (partition, total, count) SELECT kafka_partition, amount, 1 FROM applied
     ON CONFLICT (partition) DO UPDATE SET total = p.total + excluded.total, count = p.count + excluded.count`,
    [eventId, requestId, amount.toString()],
  );
}


describe('summa verify against a real database', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  /** A second pool: the audit then reads each schema on a connection (and in a snapshot) of its own. */
  let apart: pg.Pool;
  // Batches of 4 rows: the merge crosses many batch boundaries of both sides.
  const audit = (options: AuditOptions = {}) => auditInvariant({ calculator: sql, totals: sql }, { batchSize: 4, ...options });
  const auditApart = (options: AuditOptions = {}) => auditInvariant({ calculator: sql, totals: apart }, { batchSize: 4, ...options });

  before(async () => {
    database = await createTestDatabase('verify');
    sql = new pg.Pool({ connectionString: database.url });
    apart = new pg.Pool({ connectionString: database.url, max: 2 });
    // Clients still closing when the database is dropped report it; nothing to hear.
    for (const pool of [sql, apart]) pool.on('error', () => {});
    await migrate(sql, 'calculator', CALCULATOR_MIGRATIONS);
    await migrate(sql, 'totals', TOTALS_MIGRATIONS);
  });

  after(async () => {
    await sql?.end();
    await apart?.end();
    await database?.drop();
  });

  // Every case starts from a consistent history: 20 applied sums beyond 64 bits, one still in the outbox.
  beforeEach(async () => {
    await sql.query('TRUNCATE calculator.requests, calculator.outbox, totals.applied_events, totals.partition_totals');
    for (let i = 0; i < 20; i++) await accept(sql, 2n ** 62n - BigInt(i), 2n ** 61n, { published: true, applied: true });
    await accept(sql, 1n, 2n, { published: false });
  });

  it('passes on a consistent history and reports the pending event as in flight', async () => {
    const report = await audit();
    assert.equal(report.ok, true, formatReport(report));
    assert.deepEqual(
      { requests: report.counts.requests, appliedOnce: report.counts.appliedOnce, pending: report.counts.pendingInOutbox },
      { requests: 21, appliedOnce: 20, pending: 1 },
    );
    assert.equal(report.total.recorded, report.total.ofAppliedEvents);
    assert.ok(BigInt(report.total.recorded) > 2n ** 64n);

    const cli = await runSumma(['verify'], { DATABASE_URL: database.url });
    assert.equal(cli.code, 0, cli.output);
    assert.match(cli.output, /\nran in \d+\.\d\d s; exit code 0: the invariant holds\n$/);
    assert.match(cli.output, /in flight: +1 \(1 in the outbox/);
  });

  it('with --wait, fails with exit code 4 when the pipeline does not go quiet', async () => {
    const cli = await runSumma(['verify', '--wait', '1'], { DATABASE_URL: database.url });
    assert.equal(cli.code, 4, cli.output);
    assert.match(cli.output, /exit code 4: still in flight after --wait/);
    assert.match(cli.output, /1 request\(s\) still in flight after waiting 1s/);
  });

  it('waits for an event in flight to be applied', async () => {
    const { rows } = await sql.query<{ event_id: string; request_id: string; sum: string }>(
      'SELECT r.event_id::text, r.request_id, r.sum::text FROM calculator.requests r JOIN calculator.outbox o USING (event_id)',
    );
    const pending = rows[0]!;
    setTimeout(() => {
      void (async () => {
        await applyEvent(sql, pending.event_id, pending.request_id, BigInt(pending.sum));
        await sql.query('DELETE FROM calculator.outbox');
      })();
    }, 700);
    const report = await auditUntilQuiet({ calculator: sql, totals: sql }, { waitSeconds: 10, pollMs: 100 });
    assert.equal(report.ok, true, formatReport(report));
    assert.equal(report.counts.appliedOnce, 21);
    assert.equal(report.counts.pendingInOutbox, 0);
  });

  it('fails when an applied event is deleted: the request is lost and the total disagrees', async () => {
    await sql.query('DELETE FROM totals.applied_events WHERE event_id = (SELECT event_id FROM totals.applied_events LIMIT 1)');
    for (const report of [await audit(), await auditApart()]) {
      assert.equal(report.ok, false);
      assert.equal(report.problems.lost, 1);
      assert.equal(report.counts.clearedOnReread, 0);
      assert.equal(report.problems.totalMismatch, true);
    }

    const cli = await runSumma(['verify'], { DATABASE_URL: database.url });
    assert.equal(cli.code, 1, cli.output);
    assert.match(cli.output, /FAILED:\n {2}- 1 accepted request\(s\) lost/);
    assert.match(cli.output, /totals\.total says \d+ over 20 events, the applied events add up to \d+ over 19/);
  });

  it('reads a lost candidate again before calling it lost: an event applied since the snapshot is not lost', async () => {
    for (const run of [audit, auditApart]) {
      // Published 5 minutes ago and not applied in the snapshot; applied before the second read.
      const late = await accept(sql, 4n, 5n, { published: true });
      const seen: LostCandidate[] = [];
      const report = await run({
        beforeReread: async (candidates) => {
          seen.push(...candidates);
          await applyEvent(sql, late.eventId, late.requestId, late.sum);
        },
      });
      assert.deepEqual(seen, [{ eventId: late.eventId, requestId: late.requestId, sum: late.sum.toString() }]);
      assert.equal(report.ok, true, formatReport(report));
      assert.equal(report.problems.lost, 0);
      assert.equal(report.counts.inTransit, 1);
      assert.equal(report.counts.clearedOnReread, 1);
      assert.match(formatReport(report), /1 published, not yet applied, 1 of them found applied when read again/);
    }
    const after = await audit();
    assert.equal(after.ok, true, formatReport(after));
    assert.equal(after.counts.appliedOnce, 22);
    assert.equal(after.counts.clearedOnReread, 0);
  });

  it('calls a request lost when the second read does not find it either', async () => {
    const gone = await accept(sql, 4n, 5n, { published: true });
    let rereads = 0;
    const report = await audit({ beforeReread: () => void (rereads += 1) });
    assert.equal(rereads, 1);
    assert.equal(report.problems.lost, 1);
    assert.deepEqual(report.samples.lost, [`request ${gone.requestId} (event ${gone.eventId}, sum 9)`]);
    assert.match(formatReport(report), /1 accepted request\(s\) lost: neither pending in the outbox nor applied after 30s, read twice/);
  });

  it('does not call a request lost while it is younger than the grace period', async () => {
    await accept(sql, 4n, 5n, { published: true, acceptedAgo: '1 second' });
    const report = await audit();
    assert.equal(report.ok, true, formatReport(report));
    assert.equal(report.counts.inTransit, 1);
  });

  it('fails when the total is doubled', async () => {
    await sql.query('UPDATE totals.partition_totals SET total = total * 2');
    const report = await audit();
    assert.deepEqual(report.failures.length, 1, formatReport(report));
    assert.equal(report.problems.totalMismatch, true);
    assert.match(formatReport(report), /totals\.total says \d+ over 20 events, the applied events add up to/);
  });

  it('fails on an applied event no request produced, and on a request applied twice', async () => {
    await applyEvent(sql, randomUUID(), 'made-up', 42n);
    const { rows } = await sql.query<{ request_id: string; sum: string; event_id: string }>(
      'SELECT request_id, sum::text, event_id::text FROM totals.applied_events JOIN calculator.requests USING (request_id, event_id) LIMIT 1',
    );
    const original = rows[0]!.event_id;
    // A second event for the same request: what a retry that bypassed the idempotency key would do.
    const twin = randomUUID();
    await sql.query(`INSERT INTO calculator.requests (request_id, num1, num2, sum, event_id, generation) VALUES ($1, 0, $2, $2, $3, ${REQUESTS_GENERATION})`, [
      `${rows[0]!.request_id}-twin`,
      rows[0]!.sum,
      twin,
    ]);
    await applyEvent(sql, twin, rows[0]!.request_id, BigInt(rows[0]!.sum));
    const report = await audit();
    assert.equal(report.ok, false);
    assert.equal(report.problems.withoutRequest, 1);
    assert.equal(report.problems.appliedTwice, 1);
    assert.deepEqual(report.samples.appliedTwice, [`request ${rows[0]!.request_id} applied 2 times (events ${[twin, original].sort().join(', ')})`]);
    assert.equal(report.problems.mismatched, 1, 'the twin was applied under another request id');
    assert.equal(report.problems.totalMismatch, false, 'the total matches the applied events; the events are wrong');
    const { counts, problems } = report;
    assert.deepEqual([counts.requests, counts.appliedOnce, counts.pendingInOutbox, problems.mismatched], [22, 20, 1, 1], 'every request counted in one place');
    const cli = await runSumma(['verify', '--json'], { DATABASE_URL: database.url });
    assert.equal(cli.code, 1);
    const json = JSON.parse(cli.output);
    assert.match(json.samples.withoutRequest[0], /request id made-up, amount 42/);
    assert.equal(json.exitCode, 1);
    assert.ok(json.verifySeconds > 0);
  });

  it('fails when an applied amount differs from the accepted sum', async () => {
    await sql.query('UPDATE totals.applied_events SET amount = amount + 1 WHERE event_id = (SELECT event_id FROM totals.applied_events LIMIT 1)');
    await sql.query('UPDATE totals.partition_totals SET total = total + 1 WHERE partition = 0');
    const report = await audit();
    assert.equal(report.problems.mismatched, 1);
    assert.match(report.samples.mismatched[0]!.reason, /applied amount \d+, accepted sum \d+/);
    assert.equal(report.problems.totalMismatch, false);
  });

  it('fails when the oldest outbox event is older than --max-outbox-age: the relay is stuck', async () => {
    await sql.query("UPDATE calculator.outbox SET created_at = now() - interval '10 minutes'");
    const report = await audit();
    assert.equal(report.ok, false, formatReport(report));
    assert.equal(report.problems.stuckOutbox, true);
    assert.deepEqual(report.outbox, { pending: 1, oldestAgeSeconds: report.outbox.oldestAgeSeconds, maxAgeSeconds: 300 });
    assert.ok(report.outbox.oldestAgeSeconds! >= 600 && report.outbox.oldestAgeSeconds! < 700, String(report.outbox.oldestAgeSeconds));
    assert.match(
      formatReport(report),
      /relay stuck: the oldest of 1 outbox event\(s\) is 6\d\d s old by the database's clock \(limit 300 s\): events are not reaching the total/,
    );

    const cli = await runSumma(['verify'], { DATABASE_URL: database.url });
    assert.equal(cli.code, 3, cli.output);
    assert.match(cli.output, /relay stuck/);
    assert.match(cli.output, /exit code 3: the relay is stuck/);
    const json = await runSumma(['verify', '--json'], { DATABASE_URL: database.url });
    assert.equal(json.code, 3, json.output);
    assert.equal(JSON.parse(json.output).exitCode, 3);
    const tolerant = await runSumma(['verify', '--max-outbox-age', '900'], { DATABASE_URL: database.url });
    assert.equal(tolerant.code, 0, tolerant.output);

    // A broken invariant outranks a stuck relay.
    await sql.query('DELETE FROM totals.applied_events WHERE event_id = (SELECT event_id FROM totals.applied_events LIMIT 1)');
    const both = await runSumma(['verify'], { DATABASE_URL: database.url });
    assert.equal(both.code, 1, both.output);
  });

  it('exits 5 when it cannot audit, and 2 for a bad command line', async () => {
    const unreachable = await runSumma(['verify'], { DATABASE_URL: 'postgres://summa:summa@127.0.0.1:1/summa' });
    assert.equal(unreachable.code, 5, unreachable.output);
    assert.match(unreachable.output, /summa verify: could not audit: .*ECONNREFUSED/);
    const noSchema = await runSumma(['verify'], { DATABASE_URL: database.url.replace(/\/[^/]+$/, '/postgres') });
    assert.equal(noSchema.code, 5, noSchema.output);
    assert.match(noSchema.output, /could not audit: relation "totals.total" does not exist/);
    const badFlag = await runSumma(['verify', '--max-outbox-age', 'soon'], { DATABASE_URL: database.url });
    assert.equal(badFlag.code, 2, badFlag.output);
    assert.match(badFlag.output, /--max-outbox-age must be a number of seconds/);
  });

  it('refuses a pool too small to hold both snapshots and read again, rather than wait for a connection forever', async () => {
    const small = new pg.Pool({ connectionString: database.url, max: 2 });
    try {
      await assert.rejects(auditInvariant({ calculator: small, totals: small }), /needs a pool of at least 3 connections here, this one allows 2/);
    } finally {
      await small.end();
    }
  });

  it("judges ages by the database's clock, whatever the clock of the host verify runs on says", async () => {
    // Published 5 s ago and 1 minute in the outbox, by the database's clock.
    await sql.query("UPDATE calculator.outbox SET created_at = now() - interval '1 minute'");
    await accept(sql, 4n, 5n, { published: true, acceptedAgo: '5 seconds' });
    const hostClock = (offsetMs: number) => mock.timers.enable({ apis: ['Date'], now: Date.now() + offsetMs });
    try {
      // An hour fast, the host would call the request lost (3605 s old) and the relay stuck.
      hostClock(3600_000);
      const fast = await audit();
      assert.equal(fast.ok, true, formatReport(fast));
      assert.equal(fast.counts.inTransit, 1);
      assert.equal(fast.problems.stuckOutbox, false);
      mock.timers.reset();

      // An hour slow, the host would see an outbox event 50 minutes in the future; the database
      // sees it 10 minutes old.
      await sql.query("UPDATE calculator.outbox SET created_at = now() - interval '10 minutes'");
      hostClock(-3600_000);
      const slow = await audit();
      assert.equal(slow.problems.stuckOutbox, true, formatReport(slow));
      assert.equal(slow.counts.inTransit, 1);
    } finally {
      mock.timers.reset();
    }
  });
});

describe('summa verify on a larger history', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  const requests = 200_000;

  before(async () => {
    database = await createTestDatabase('verify_large');
    sql = new pg.Pool({ connectionString: database.url, max: 2 });
    await migrate(sql, 'calculator', CALCULATOR_MIGRATIONS);
    await migrate(sql, 'totals', TOTALS_MIGRATIONS);
    // What the pipeline leaves behind once quiet, written in bulk: every request applied once.
    await sql.query(
      `INSERT INTO calculator.requests (request_id, num1, num2, sum, event_id, accepted_at, generation)
       SELECT 'bulk-' || i, i, i, 2 * i, gen_random_uuid(), now() - interval '1 hour', ${REQUESTS_GENERATION} FROM generate_series(1, $1::int) AS i`,
      [requests],
    );
    await sql.query(
      `INSERT INTO totals.applied_events (event_id, request_id, amount, accepted_at, kafka_partition, kafka_offset, generation)
       SELECT event_id, request_id, sum, accepted_at, 0, row_number() OVER (), ${APPLIED_GENERATION} FROM calculator.requests`,
    );
    await sql.query(
      `INSERT INTO totals.partition_totals (partition, total, count)
       SELECT kafka_partition, sum(amount), count(*) FROM totals.applied_events GROUP BY kafka_partition`,
    );
    await sql.query('VACUUM ANALYZE calculator.requests, totals.applied_events');
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
  });

  it('audits 200,000 requests within a 64 MB heap: the rows are streamed, not loaded', async () => {
    const cli = await runSumma(['verify'], { DATABASE_URL: database.url, NODE_OPTIONS: '--max-old-space-size=64' });
    assert.equal(cli.code, 0, cli.output.slice(0, 2000));
    assert.match(cli.output, new RegExp(`accepted requests: +${requests}\\n`));
    assert.match(cli.output, new RegExp(`applied once: +${requests}\\n`));
    assert.match(cli.output, /OK: every accepted request is applied exactly once/);
  });
});
