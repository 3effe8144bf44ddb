import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { pino } from 'pino';
import { CALCULATOR_MIGRATIONS, CALCULATOR_SCHEMA } from '../../src/calculator/schema.ts';
import { auditInvariant, formatReport, type AuditOptions } from '../../src/cli/invariant-audit.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { currentGenerationSql, PeriodPartitions } from '../../src/platform/db/period-partitions.ts';
import { TOTALS_MIGRATIONS, TOTALS_SCHEMA } from '../../src/totals/schema.ts';
import { TotalsStore } from '../../src/totals/totals-store.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';
import { runSumma } from '../support/summa-cli.ts';

const silent = pino({ level: 'silent' });


interface Accepted {
  requestId: string;
  eventId: string;
  sum: bigint;
  acceptedAt: Date;
}

// Both tables kept for a second, in periods of half a second; the keepers are stepped by hand, so
// nothing moves while an audit reads.
describe('summa verify across dropped periods, against real PostgreSQL', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let store: TotalsStore;
  let requestsKeeper: PeriodPartitions;
  let appliedKeeper: PeriodPartitions;
  let offset = 0n;
  /** Requests and their events, accepted and applied before the first drop. */
  const early: Accepted[] = [];
  /** A request whose event is still in the outbox. */
  let pending: Accepted;

  // In the window just kept, accepted_at is a second or so old: no grace, no edge.
  const audit = (options: AuditOptions = {}) => auditInvariant({ calculator: sql, totals: sql }, { batchSize: 3, graceSeconds: 0, edgeSeconds: 0, ...options });

  /** A request as the calculator records it (into the current generation), published unless `outbox`. */
  async function accept(sum: bigint, options: { acceptedAt?: Date; outbox?: boolean } = {}): Promise<Accepted> {
    const accepted = { requestId: `r-${randomUUID()}`, eventId: randomUUID(), sum, acceptedAt: options.acceptedAt ?? new Date() };
    await sql.query(
      `INSERT INTO calculator.requests (request_id, num1, num2, sum, event_id, accepted_at, generation)
       VALUES ($1, $2, 0, $2, $3, $4, ${currentGenerationSql(CALCULATOR_SCHEMA, 'requests')})`,
      [accepted.requestId, sum.toString(), accepted.eventId, accepted.acceptedAt],
    );
    if (options.outbox) {
      await sql.query(`INSERT INTO calculator.outbox (event_id, topic, message_key, payload) VALUES ($1, 'sums', $2, '{}')`, [accepted.eventId, accepted.requestId]);
    }
    return accepted;
  }

  /** Its event delivered to the totals, as the consumer applies it. */
  async function deliver(accepted: Accepted) {
    offset += 1n;
    const event = { eventId: accepted.eventId, requestId: accepted.requestId, num1: accepted.sum, num2: 0n, sum: accepted.sum, acceptedAt: accepted.acceptedAt };
    return store.applyBatch('verify-retention', [{ event, partition: 0, offset, source: { topic: 'sums', key: accepted.requestId, value: Buffer.from('{}') } }], [], []);
  }

  const dropped = async (schema: string, table: string, generation: number) =>
    (
      await sql.query<{ dropped: boolean }>(`SELECT dropped_at IS NOT NULL AS dropped FROM ${schema}.partitions WHERE table_name = $1 AND generation = $2`, [
        table,
        generation,
      ])
    ).rows[0]?.dropped ?? false;

  before(async () => {
    database = await createTestDatabase('verify_retention');
    sql = new pg.Pool({ connectionString: database.url, max: 6 });
    sql.on('error', () => {});
    await migrate(sql, CALCULATOR_SCHEMA, CALCULATOR_MIGRATIONS);
    await migrate(sql, TOTALS_SCHEMA, TOTALS_MIGRATIONS);
    store = new TotalsStore(sql);
    const short = { windowSeconds: 1, periodSeconds: 0.5 };
    requestsKeeper = new PeriodPartitions(sql, { schema: CALCULATOR_SCHEMA, table: 'requests', amountColumn: 'sum', ...short }, silent);
    appliedKeeper = new PeriodPartitions(sql, { schema: TOTALS_SCHEMA, table: 'applied_events', amountColumn: 'amount', ...short }, silent);

    for (let i = 1n; i <= 5n; i++) {
      const accepted = await accept(2n ** 62n + i);
      assert.equal((await deliver(accepted)).applied, 1);
      early.push(accepted);
    }
    // Until the periods that took them are dropped on both sides.
    const deadline = Date.now() + 20_000;
    while (!((await dropped('calculator', 'requests', 0)) && (await dropped('totals', 'applied_events', 0)))) {
      assert.ok(Date.now() < deadline, 'the keepers did not drop the first periods in time');
      await requestsKeeper.step();
      await appliedKeeper.step();
      await sleep(50);
    }
    assert.equal((await sql.query('SELECT 1 FROM calculator.requests UNION ALL SELECT 1 FROM totals.applied_events')).rowCount, 0, 'every early row is gone');
    // A later history, in the periods kept: three applied, one still in the outbox.
    await sleep(20);
    for (let i = 1n; i <= 3n; i++) await deliver(await accept(i));
    pending = await accept(10n, { outbox: true });
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
  });

  const earlySum = () => early.reduce((sum, accepted) => sum + accepted.sum, 0n);

  it('is exact across a drop, and says what it audited row by row and what through checkpoints', async () => {
    const report = await audit();
    assert.equal(report.ok, true, formatReport(report));
    assert.deepEqual(
      { requests: report.counts.requests, appliedOnce: report.counts.appliedOnce, pending: report.counts.pendingInOutbox, applied: report.counts.applied },
      { requests: 4, appliedOnce: 3, pending: 1, applied: 3 },
    );
    const { requests, applied } = report.window;
    assert.ok(requests.since !== null && applied.since !== null, JSON.stringify(report.window));
    assert.ok(requests.dropped.periods >= 1 && applied.dropped.periods >= 1);
    assert.deepEqual([requests.dropped.rows, requests.dropped.amount], [5, earlySum().toString()]);
    assert.deepEqual([applied.dropped.rows, applied.dropped.amount], [5, earlySum().toString()]);
    assert.equal(report.total.recorded, (earlySum() + 6n).toString(), 'the total outlived the rows');
    assert.equal(report.total.recordedCount, 8);
    assert.deepEqual([report.total.ofCheckpoints, report.total.checkpointCount], [earlySum().toString(), 5]);
    assert.equal(report.problems.totalMismatch, false);
    const text = formatReport(report);
    assert.match(text, /audited request by request: requests of the periods since \d{4}-\d\d-\d\dT[\d:.]+Z \(4\), applied events of the periods since [\d\-T:.Z]+ \(3\)/);
    assert.match(text, new RegExp(`checked through checkpoints: \\d+ dropped period\\(s\\), 5 requests, sum ${earlySum()} / \\d+ dropped period\\(s\\), 5 applied events, sum ${earlySum()}`));

    const cli = await runSumma(['verify', '--json', '--edge-seconds', '0'], { DATABASE_URL: database.url });
    assert.equal(cli.code, 0, cli.output);
    const json = JSON.parse(cli.output);
    assert.equal(json.window.applied.dropped.rows, 5);
    assert.equal(json.window.edgeSeconds, 0);
    const text2 = await runSumma(['verify'], { DATABASE_URL: database.url });
    assert.equal(text2.code, 0, text2.output);
    assert.match(text2.output, /checked through checkpoints: /);
  });

  it('still finds a request lost inside the window, and tells it from one whose event was applied in a dropped period', async () => {
    const lost = await accept(7n);
    // Accepted before the applied events kept began: its event went, if anywhere, into a dropped period.
    const old = await accept(11n, { acceptedAt: new Date(Date.now() - 600_000) });
    // And the other way round: an event kept whose request was accepted before the requests kept.
    const orphan = { requestId: `r-${randomUUID()}`, eventId: randomUUID(), sum: 13n, acceptedAt: new Date(Date.now() - 600_000) };
    await sql.query(
      `WITH applied AS (
         INSERT INTO totals.applied_events (event_id, request_id, amount, accepted_at, kafka_partition, kafka_offset, generation)
         VALUES ($1, $2, $3, $4, 0, 0, ${currentGenerationSql(TOTALS_SCHEMA, 'applied_events')}) RETURNING amount)
       UPDATE totals.partition_totals SET total = total + (SELECT amount FROM applied), count = count + 1 WHERE partition = 0`,
      [orphan.eventId, orphan.requestId, orphan.sum.toString(), orphan.acceptedAt],
    );
    try {
      const report = await audit();
      assert.equal(report.problems.lost, 1, formatReport(report));
      assert.deepEqual(report.samples.lost, [`request ${lost.requestId} (event ${lost.eventId}, sum 7)`]);
      assert.equal(report.counts.beyondAppliedWindow, 1);
      assert.equal(report.counts.beyondRequestWindow, 1);
      assert.equal(report.problems.withoutRequest, 0);
      assert.equal(report.problems.totalMismatch, false);
      assert.match(formatReport(report), /beyond the window: +1 request\(s\) accepted before the applied events kept .*1 applied event\(s\) whose request was dropped \(edge 0 s\)/);
      // Without the old one, the lost one is the only failure.
      assert.deepEqual(report.failures.length, 1, formatReport(report));

      // Within an edge wide enough, the lost request could have been applied in a dropped period.
      const wide = await audit({ edgeSeconds: 3600 });
      assert.equal(wide.problems.lost, 0, formatReport(wide));
      assert.equal(wide.counts.beyondAppliedWindow, 2);
      assert.equal(old.sum, 11n);
    } finally {
      await sql.query('DELETE FROM calculator.requests WHERE event_id = ANY($1::uuid[])', [[lost.eventId, old.eventId]]);
      await sql.query('DELETE FROM totals.applied_events WHERE event_id = $1', [orphan.eventId]);
      await sql.query('UPDATE totals.partition_totals SET total = total - 13, count = count - 1 WHERE partition = 0');
    }
    assert.equal((await audit()).ok, true);
  });

  it('counts a request id used again only within one idempotency window as applied twice', async () => {
    const requestId = `r-${randomUUID()}`;
    const events = [randomUUID(), randomUUID()];
    const generation = currentGenerationSql(TOTALS_SCHEMA, 'applied_events');
    await sql.query(
      `INSERT INTO totals.applied_events (event_id, request_id, amount, accepted_at, kafka_partition, kafka_offset, generation)
       SELECT e, $2, 1, now() - (o * interval '100 seconds'), 0, 0, ${generation} FROM unnest($1::uuid[]) WITH ORDINALITY AS t(e, o)`,
      [events, requestId],
    );
    try {
      assert.equal((await audit({ idempotencyWindowSeconds: 50 })).problems.appliedTwice, 0, 'used again after the window: a new request');
      const within = await audit({ idempotencyWindowSeconds: 150 });
      assert.equal(within.problems.appliedTwice, 1);
      assert.match(within.samples.appliedTwice[0]!, new RegExp(`request ${requestId} applied 2 times`));
    } finally {
      await sql.query('DELETE FROM totals.applied_events WHERE event_id = ANY($1::uuid[])', [events]);
    }
  });

  it('reports an event quarantined as older than the dedup window, with exit code 6', async () => {
    // Delivered again after its period was dropped: quarantined, not applied again.
    const again = await deliver(early[0]!);
    assert.deepEqual([again.applied, again.tooOld.length], [0, 1]);
    // A request kept whose event is older than the dedup horizon: its event is quarantined too.
    const kept = await accept(17n, { acceptedAt: early[0]!.acceptedAt });
    assert.equal((await deliver(kept)).tooOld.length, 1);

    const report = await audit();
    assert.equal(report.problems.quarantined, 2, formatReport(report));
    assert.equal(report.counts.quarantined, 1, 'the request kept is quarantined, not lost');
    assert.equal(report.problems.lost, 0);
    assert.equal(report.counts.beyondAppliedWindow, 0);
    assert.deepEqual([...report.samples.quarantined].sort(), [`event ${early[0]!.eventId} (request id ${early[0]!.requestId})`, `event ${kept.eventId} (request id ${kept.requestId})`].sort());
    assert.match(formatReport(report), /quarantined: +2 event\(s\) older than the dedup window, not applied \(1 of the requests kept\)/);
    assert.deepEqual(report.failures, ['2 event(s) quarantined as older than the dedup window: decide with summa dlq']);

    const cli = await runSumma(['verify', '--edge-seconds', '0'], { DATABASE_URL: database.url });
    assert.equal(cli.code, 6, cli.output);
    assert.match(cli.output, /exit code 6: events quarantined as older than the dedup window: decide with summa dlq/);
    // --wait waits for the pipeline, not for an operator: once nothing is in flight, it does not wait.
    await sql.query('DELETE FROM calculator.outbox WHERE event_id = $1', [pending.eventId]);
    await sql.query('DELETE FROM calculator.requests WHERE event_id = $1', [pending.eventId]);
    const started = Date.now();
    const waited = await runSumma(['verify', '--edge-seconds', '0', '--wait', '60'], { DATABASE_URL: database.url });
    assert.equal(waited.code, 6, waited.output);
    assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);

    // Once decided (here: marked replayed, as summa dlq replay does when it applies one), it is no longer reported.
    await sql.query(`UPDATE totals.rejected_records SET replayed_at = now() WHERE event_id IS NOT NULL`);
    await sql.query('DELETE FROM calculator.requests WHERE event_id = $1', [kept.eventId]);
    const decided = await audit();
    assert.equal(decided.ok, true, formatReport(decided));
  });

  it('fails when a checkpoint disagrees with the total', async () => {
    const { rows } = await sql.query<{ generation: number }>(
      `UPDATE totals.partitions SET amount = amount + 1
       WHERE table_name = 'applied_events' AND generation = (SELECT min(generation) FROM totals.partitions WHERE table_name = 'applied_events' AND dropped_at IS NOT NULL AND row_count > 0)
       RETURNING generation`,
    );
    assert.equal(rows.length, 1);
    try {
      const report = await audit();
      assert.equal(report.problems.totalMismatch, true, formatReport(report));
      assert.match(
        formatReport(report),
        new RegExp(`totals\\.total says ${earlySum() + 6n} over 8 events, the applied events add up to 6 over 3 plus the checkpoints of \\d+ dropped period\\(s\\), ${earlySum() + 1n} over 5: ${earlySum() + 7n} over 8`),
      );
      const cli = await runSumma(['verify', '--edge-seconds', '0'], { DATABASE_URL: database.url });
      assert.equal(cli.code, 1, cli.output);

      // A dropped period without a checkpoint: its rows went unaccounted for.
      await sql.query(`UPDATE totals.partitions SET closed_at = NULL WHERE table_name = 'applied_events' AND generation = $1`, [rows[0]!.generation]);
      const unchecked = await audit();
      assert.equal(unchecked.problems.withoutCheckpoint, 1);
      assert.match(formatReport(unchecked), new RegExp(`no checkpoint: totals\\.applied_events generation ${rows[0]!.generation}`));
    } finally {
      await sql.query(`UPDATE totals.partitions SET amount = amount - 1, closed_at = coalesce(closed_at, now()) WHERE table_name = 'applied_events' AND generation = $1`, [
        rows[0]!.generation,
      ]);
    }
    assert.equal((await audit()).ok, true);
  });
});
