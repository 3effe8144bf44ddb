import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { encodeSumAccepted, type SumAccepted } from '../../src/events/sum-accepted.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { TOTALS_MIGRATIONS, TOTALS_SCHEMA } from '../../src/totals/schema.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { PeriodPartitions } from '../../src/platform/db/period-partitions.ts';
import { DEDUP_HORIZON_SQL, TotalsStore } from '../../src/totals/totals-store.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

const SUMMA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/summa.mjs');
const TOPIC = 'summa.sums.v1';
const silent = pino({ level: 'silent' });

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function summa(env: Record<string, string>, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SUMMA, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

function sumEvent(num1: bigint, num2: bigint): SumAccepted {
  return { eventId: randomUUID(), requestId: `dlq-${randomUUID()}`, num1, num2, sum: num1 + num2, acceptedAt: new Date() };
}

/** `summa dlq` against a real totals schema, filled the way the consumer fills it. */
describe('summa dlq against a real database', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let store: TotalsStore;
  let env: Record<string, string>;

  /** Parks a record exactly as the consumer does: through the store's batch transaction. */
  const park = (partition: number, offset: bigint, value: string | Buffer, reason: string, key: string | null = 'a-key') =>
    store.applyBatch('dlq-test', [], [{ topic: TOPIC, partition, offset, key, value: Buffer.from(value), reason, deadLettered: true }], []);
  const total = () => store.readTotal();

  before(async () => {
    database = await createTestDatabase('dlq');
    sql = new pg.Pool({ connectionString: database.url, max: 2 });
    await migrate(sql, TOTALS_SCHEMA, TOTALS_MIGRATIONS);
    store = new TotalsStore(sql);
    env = { DATABASE_URL: database.url };
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
  });

  beforeEach(async () => {
    await sql.query('TRUNCATE totals.rejected_records, totals.applied_events, totals.partition_totals');
  });

  it('lists a parked record: where it was, when, why, its key and a readable payload, with a count', async () => {
    await park(1, 7n, 'not json at all', 'value is not JSON', 'order-7');
    const run = await summa(env, 'dlq', 'list');
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^1 parked record\b/m);
    assert.match(run.stdout, new RegExp(`^${TOPIC.replaceAll('.', '\\.')}/1/7 +rejected \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z +parked$`, 'm'));
    assert.match(run.stdout, /reason: +value is not JSON/);
    assert.match(run.stdout, /key: +"order-7"/);
    assert.match(run.stdout, /payload: +"not json at all" \(15 bytes\)/);
  });

  it('lists newest first, up to --limit, and as JSON for scripts', async () => {
    await park(0, 1n, 'first', 'value is not JSON');
    await park(0, 2n, Buffer.from([0x00, 0x01, 0xff, 0x62]), 'value is not JSON', null);
    const limited = await summa(env, 'dlq', 'list', '--limit', '1');
    assert.equal(limited.code, 0, limited.stderr);
    assert.match(limited.stdout, /^2 parked records, newest 1 shown/m);
    assert.match(limited.stdout, new RegExp(`${TOPIC}/0/2`));
    assert.doesNotMatch(limited.stdout, new RegExp(`${TOPIC}/0/1\\b`));

    const run = await summa(env, 'dlq', 'list', '--json');
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout);
    assert.equal(report.parked, 2);
    assert.equal(report.replayed, 0);
    assert.deepEqual(
      report.records.map((r: any) => r.id),
      [`${TOPIC}/0/2`, `${TOPIC}/0/1`],
    );
    const [binary, text] = report.records;
    assert.equal(text.topic, TOPIC);
    assert.equal(text.partition, 0);
    assert.equal(text.offset, '1');
    assert.equal(text.reason, 'value is not JSON');
    assert.equal(text.key, 'a-key');
    assert.equal(Buffer.from(text.payloadBase64, 'base64').toString(), 'first');
    assert.equal(text.replayedAt, null);
    assert.ok(!Number.isNaN(Date.parse(text.rejectedAt)));
    assert.equal(binary.key, null);
    assert.deepEqual(Buffer.from(binary.payloadBase64, 'base64'), Buffer.from([0x00, 0x01, 0xff, 0x62]));
    assert.match(limited.stdout, /key: +\(none\)/);
    assert.match(limited.stdout, /payload: +0x0001ff62 \(4 bytes, not UTF-8 text\)/);
  });

  it('replays a parked valid event into the total exactly once, however often it is replayed', async () => {
    const event = sumEvent(5n, 10n);
    // As an older, stricter decoder would have parked it.
    await park(1, 40n, encodeSumAccepted(event), 'unsupported event version 1');

    const dryRun = await summa(env, 'dlq', 'replay', `${TOPIC}/1/40`, '--dry-run');
    assert.equal(dryRun.code, 0, dryRun.stdout + dryRun.stderr);
    assert.match(dryRun.stdout, new RegExp(`${TOPIC}/1/40 +would add 15 \\(request ${event.requestId}, event ${event.eventId}\\)`));
    assert.deepEqual(await total(), { total: '0', count: 0 });

    const first = await summa(env, 'dlq', 'replay', `${TOPIC}/1/40`);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.match(first.stdout, new RegExp(`${TOPIC}/1/40 +replayed: added 15 \\(request ${event.requestId}, event ${event.eventId}\\)`));
    assert.deepEqual(await total(), { total: '15', count: 1 });
    assert.equal((await store.findByRequestId(event.requestId))?.sum, '15');

    const second = await summa(env, 'dlq', 'replay', `${TOPIC}/1/40`);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.match(second.stdout, /already replayed at \d{4}-/);
    const all = await summa(env, 'dlq', 'replay', '--all');
    assert.equal(all.code, 0, all.stdout + all.stderr);
    assert.match(all.stdout, /no parked records to replay/);
    assert.deepEqual(await total(), { total: '15', count: 1 });

    const parked = await summa(env, 'dlq', 'list');
    assert.match(parked.stdout, /^0 parked records \(1 replayed, not shown: --all lists them\)/m);
    const everything = await summa(env, 'dlq', 'list', '--all', '--json');
    const [record] = JSON.parse(everything.stdout).records;
    assert.equal(record.id, `${TOPIC}/1/40`);
    assert.ok(!Number.isNaN(Date.parse(record.replayedAt)));
    assert.equal(record.replayedEventId, event.eventId);
    const text = await summa(env, 'dlq', 'list', '--all');
    assert.match(text.stdout, new RegExp(`${TOPIC}/1/40 +rejected \\S+ +replayed \\d{4}-`));
  });

  it('adds the event once when two replays of it run at the same moment', async () => {
    const event = sumEvent(100n, 1n);
    await park(3, 1n, encodeSumAccepted(event), 'unknown event type "x"');
    const runs = await Promise.all([summa(env, 'dlq', 'replay', '--all'), summa(env, 'dlq', 'replay', `${TOPIC}/3/1`), summa(env, 'dlq', 'replay', '--all')]);
    for (const run of runs) assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(runs.filter((run) => /replayed: added 101/.test(run.stdout)).length, 1, runs.map((run) => run.stdout).join('\n'));
    assert.deepEqual(await total(), { total: '101', count: 1 });
  });

  it('does not count again an event the consumer already applied from Kafka', async () => {
    const event = sumEvent(20n, 22n);
    await store.applyBatch('dlq-test', [{ event, partition: 0, offset: 3n }], [], []);
    await park(2, 9n, encodeSumAccepted(event), 'unknown event type "x"');
    const run = await summa(env, 'dlq', 'replay', `${TOPIC}/2/9`);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, new RegExp(`${TOPIC}/2/9 +replayed: event ${event.eventId} was already applied, nothing added`));
    assert.deepEqual(await total(), { total: '42', count: 1 });
    const list = JSON.parse((await summa(env, 'dlq', 'list', '--json')).stdout);
    assert.equal(list.parked, 0);
    assert.equal(list.replayed, 1);
  });

  it('keeps a record that still is no event parked, says why, and exits non-zero', async () => {
    const event = sumEvent(1n, 2n);
    await park(0, 5n, 'garbage', 'value is not JSON');
    await park(0, 6n, encodeSumAccepted(event), 'unknown event type "x"');

    const run = await summa(env, 'dlq', 'replay', '--all');
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, new RegExp(`${TOPIC}/0/5 +still parked: value is not JSON`));
    assert.match(run.stdout, new RegExp(`${TOPIC}/0/6 +replayed: added 3`));
    assert.match(run.stdout, /^replayed 1 of 2: 1 added to the total, 0 already applied; 1 still parked/m);
    assert.deepEqual(await total(), { total: '3', count: 1 });

    const list = JSON.parse((await summa(env, 'dlq', 'list', '--json')).stdout);
    assert.deepEqual(
      list.records.map((r: any) => [r.id, r.reason, r.replayedAt]),
      [[`${TOPIC}/0/5`, 'value is not JSON', null]],
    );

    const json = await summa(env, 'dlq', 'replay', `${TOPIC}/0/5`, '--json');
    assert.equal(json.code, 1);
    assert.deepEqual(JSON.parse(json.stdout).outcomes, [{ id: `${TOPIC}/0/5`, status: 'invalid', reason: 'value is not JSON' }]);
  });

  it('names a record that does not exist, and refuses a malformed one as a usage error', async () => {
    const missing = await summa(env, 'dlq', 'replay', `${TOPIC}/0/999`);
    assert.equal(missing.code, 1, missing.stdout + missing.stderr);
    assert.match(missing.stdout, new RegExp(`${TOPIC}/0/999 +not found: no such rejected record`));

    for (const args of [['replay', 'no-slashes'], ['replay'], ['replay', '--all', `${TOPIC}/0/1`], ['list', '--limit', '0'], ['list', '--dry-run'], ['bogus']]) {
      const run = await summa(env, 'dlq', ...args);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, /^summa dlq: /, args.join(' '));
    }
  });

  it('explains itself with --help', async () => {
    const run = await summa(env, 'dlq', '--help');
    assert.equal(run.code, 0);
    assert.match(run.stdout, /summa dlq list/);
    assert.match(run.stdout, /summa dlq replay/);
    assert.match(run.stdout, /examples:/);
    assert.match(run.stdout, /exit codes:/);
    const main = await summa(env, '--help');
    assert.match(main.stdout, /summa dlq list/);
  });

  it('says in one line that a database lacks the totals schema', async () => {
    const empty = await createTestDatabase('dlq_empty');
    try {
      const run = await summa({ DATABASE_URL: empty.url }, 'dlq', 'list');
      assert.equal(run.code, 3, run.stdout + run.stderr);
      assert.match(run.stderr, /^summa: the database at \S+ lacks the totals schema or its latest migration \(.*\): start the totals service once, it applies them\n$/);
    } finally {
      await empty.drop();
    }
  });

  it('says in one line that the database is unreachable, without its password', async () => {
    const port = await freePort();
    for (const args of [['list'], ['replay', '--all']]) {
      const run = await summa({ DATABASE_URL: `postgres://summa:sekrit@127.0.0.1:${port}/summa` }, 'dlq', ...args);
      assert.equal(run.code, 3, run.stdout + run.stderr);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, new RegExp(`^summa: cannot reach the database at 127\\.0\\.0\\.1:${port}/summa: .+\\n$`));
      assert.doesNotMatch(run.stderr, /sekrit/);
    }
  });
});

/**
 * `summa dlq` on an event quarantined as older than the dedup window: applied once, its partition
 * of applied events dropped by a real keeper with a one-second window, then delivered again.
 */
describe('summa dlq with an event older than the dedup window', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let store: TotalsStore;
  let env: Record<string, string>;
  let event: SumAccepted;
  const id = `${TOPIC}/0/2`;

  before(async () => {
    database = await createTestDatabase('dlq_too_old');
    sql = new pg.Pool({ connectionString: database.url, max: 2 });
    await migrate(sql, TOTALS_SCHEMA, TOTALS_MIGRATIONS);
    store = new TotalsStore(sql);
    env = { DATABASE_URL: database.url };
    const keeper = new PeriodPartitions(sql, { schema: TOTALS_SCHEMA, table: 'applied_events', amountColumn: 'amount', windowSeconds: 1, periodSeconds: 0.5 }, silent);
    event = sumEvent(3n, 4n);
    await store.applyBatch('dlq-test', [{ event, partition: 0, offset: 1n }], [], []);
    const horizonPassed = async () => (await sql.query<{ at: Date | null }>(DEDUP_HORIZON_SQL)).rows[0]!.at !== null;
    for (const deadline = Date.now() + 20_000; !(await horizonPassed()); await sleep(50)) {
      if (Date.now() > deadline) throw new Error('the keeper did not retire the event in time');
      await keeper.step();
    }
    // Delivered again once nothing remembers it: quarantined, as the consumer does.
    const again = await store.applyBatch('dlq-test', [{ event, partition: 0, offset: 2n, source: { topic: TOPIC, key: event.requestId, value: Buffer.from(encodeSumAccepted(event)) } }], [], []);
    assert.equal(again.tooOld.length, 1);
  });

  after(async () => {
    await sql?.end();
    await database?.drop();
  });

  it('lists it as quarantined, with its event id, request id and reason', async () => {
    const run = await summa(env, 'dlq', 'list');
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^1 parked record \(1 quarantined as older than the dedup window\)/m);
    assert.match(run.stdout, new RegExp(`^${TOPIC.replaceAll('.', '\\.')}/0/2 +rejected \\S+ +quarantined: too old$`, 'm'));
    assert.match(run.stdout, new RegExp(`event: +${event.eventId}\\n +request: +"${event.requestId}"`));
    assert.match(run.stdout, /reason: +older than the dedup window: /);
    const [record] = JSON.parse((await summa(env, 'dlq', 'list', '--json')).stdout).records;
    assert.equal(record.id, id);
    assert.equal(record.quarantined, true);
    assert.equal(record.eventId, event.eventId);
    assert.equal(record.requestId, event.requestId);
  });

  it('a dry run says it would stay parked as too old, as the replay does, and changes nothing', async () => {
    const before = await store.readTotal();
    const dryRun = await summa(env, 'dlq', 'replay', id, '--dry-run');
    assert.equal(dryRun.code, 1, dryRun.stdout + dryRun.stderr);
    assert.match(dryRun.stdout, new RegExp(`${id} +would stay parked: event ${event.eventId} .* is older than the dedup window`));
    const json = JSON.parse((await summa(env, 'dlq', 'replay', id, '--dry-run', '--json')).stdout);
    assert.equal(json.outcomes[0].status, 'too-old');

    const replay = await summa(env, 'dlq', 'replay', '--all');
    assert.equal(replay.code, 1, replay.stdout + replay.stderr);
    assert.match(replay.stdout, new RegExp(`${id} +still parked: event ${event.eventId} .* is older than the dedup window`));
    assert.match(replay.stdout, /--older-than-window/);
    assert.deepEqual(await store.readTotal(), before);
    assert.equal(JSON.parse((await summa(env, 'dlq', 'list', '--json')).stdout).parked, 1);
  });

  it('--older-than-window applies it anyway, once, when the operator has checked it was not applied', async () => {
    const before = await store.readTotal();
    const dryRun = await summa(env, 'dlq', 'replay', id, '--dry-run', '--older-than-window');
    assert.equal(dryRun.code, 0, dryRun.stdout + dryRun.stderr);
    assert.match(dryRun.stdout, new RegExp(`${id} +would add 7 \\(request ${event.requestId}, event ${event.eventId}\\), older than the dedup window`));
    assert.deepEqual(await store.readTotal(), before);

    const run = await summa(env, 'dlq', 'replay', id, '--older-than-window');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, new RegExp(`${id} +replayed: added 7 \\(request ${event.requestId}, event ${event.eventId}\\), older than the dedup window`));
    assert.equal(BigInt((await store.readTotal()).total) - BigInt(before.total), 7n);
    assert.equal((await store.readTotal()).count - before.count, 1);

    const again = await summa(env, 'dlq', 'replay', id, '--older-than-window');
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /already replayed at/);
    assert.equal(BigInt((await store.readTotal()).total) - BigInt(before.total), 7n);
  });
});
