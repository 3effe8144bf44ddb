import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startCalculator, type RunningCalculator } from '../../src/calculator/calculator-service.ts';
import { readCalculatorConfig } from '../../src/calculator/config.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { readRelayConfig } from '../../src/relay/config.ts';
import { startRelay, type RunningRelay } from '../../src/relay/relay-service.ts';
import { readTotalsConfig } from '../../src/totals/config.ts';
import { startTotals, type RunningTotals } from '../../src/totals/totals-service.ts';
import { sleep } from '../../tools/load/add-load.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

const SUMMA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/summa.mjs');
const logger = createLogger('cli-test', { LOG_LEVEL: 'silent' });

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The `summa` command, as a user runs it. */
describe('the summa command against the real services', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let calculator: RunningCalculator;
  let relay: RunningRelay;
  let totals: RunningTotals;
  let cliEnv: Record<string, string>;

  const summa = (...args: string[]) =>
    new Promise<Run>((resolve) => {
      execFile(process.execPath, [SUMMA, ...args], { env: { ...process.env, ...cliEnv }, timeout: 30_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
      );
    });
  const recordedRequests = async () => Number((await sql.query<{ n: string }>('SELECT count(*) AS n FROM calculator.requests')).rows[0]!.n);

  before(async () => {
    database = await createTestDatabase('cli');
    sql = new pg.Pool({ connectionString: database.url, max: 2 });
    const where = await serviceEnvironment({ name: 'cli', databaseUrl: database.url, partitions: 2 });
    calculator = await startCalculator(readCalculatorConfig(where.env), logger);
    [relay, totals] = await Promise.all([startRelay(readRelayConfig(where.env), logger), startTotals(readTotalsConfig(where.env), logger)]);
    cliEnv = { CALCULATOR_GRPC_ADDRESS: where.grpcAddress, TOTALS_URL: where.totalsUrl, DATABASE_URL: database.url };
  });

  after(async () => {
    await Promise.all([calculator?.stop(), relay?.stop(), totals?.stop()]);
    await sql?.end();
    await database?.drop();
  });

  it('adds, replays under the same id, and takes negative numbers as numbers', async () => {
    const first = await summa('add', '5', '10', '--id', 'cli-1');
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout.trim(), '5 + 10 = 15  (request id cli-1)');
    const again = await summa('add', '5', '10', '--id', 'cli-1');
    assert.equal(again.stdout.trim(), '5 + 10 = 15  (request id cli-1, replayed)');
    const negative = await summa('add', '-5', '-9223372036854775803', '--id=-cli-2');
    assert.equal(negative.code, 0, negative.stderr);
    assert.equal(negative.stdout.trim(), '-5 + -9223372036854775803 = -9223372036854775808  (request id -cli-2)');
  });

  it('refuses bad numbers before sending anything, with exit code 2', async () => {
    const before = await recordedRequests();
    for (const numbers of [['1', 'x'], ['1.5', '2'], ['9223372036854775808', '0'], ['', '1']]) {
      const run = await summa('add', ...numbers);
      assert.equal(run.code, 2, `${numbers.join(' ')}: ${run.stdout}`);
      assert.match(run.stderr, /^summa: num[12] (must be|is outside)/, numbers.join(' '));
    }
    const usage = await summa('add', '1', '2', '--bogus');
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /Unknown option '--bogus'[\s\S]*usage:/);
    assert.equal(await recordedRequests(), before);
  });

  it("reports the server's refusals with exit code 1", async () => {
    const overflow = await summa('add', '9223372036854775807', '1');
    assert.equal(overflow.code, 1);
    assert.match(overflow.stderr, /overflows the signed 64-bit range/);
    const conflict = await summa('add', '5', '11', '--id', 'cli-1');
    assert.equal(conflict.code, 1);
    assert.match(conflict.stderr, /already used/);
  });

  it('reads the total and one request, and audits the databases', async () => {
    const deadline = Date.now() + 30_000;
    let total: Run;
    do {
      total = await summa('total');
      if (total.stdout.includes('(2 sums applied)')) break;
      await sleep(200);
    } while (Date.now() < deadline);
    assert.equal(total.stdout.trim(), 'total: -9223372036854775793  (2 sums applied)');
    const applied = await summa('sum', 'cli-1');
    assert.equal(applied.code, 0);
    assert.match(applied.stdout, /^applied: 15 at \d{4}-/);
    const unknown = await summa('sum', 'never-sent');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stdout, /^not applied: /);
    const audit = await summa('verify');
    assert.equal(audit.code, 0, audit.stdout + audit.stderr);
    assert.match(audit.stdout, /OK: every accepted request is applied exactly once/);
  });

  it('add without --id sends an id of its own, and names it when the outcome is unknown so a retry is safe', async () => {
    const added = await summa('add', '2', '2');
    assert.equal(added.code, 0, added.stderr);
    const { id } = /request id (?<id>[0-9a-f-]{36})/.exec(added.stdout)!.groups!;
    const again = await summa('add', '2', '2', '--id', id!);
    assert.match(again.stdout, /replayed/, 'the printed id is the one recorded');

    const down = await new Promise<Run>((resolve) => {
      const env = { ...process.env, ...cliEnv, CALCULATOR_GRPC_ADDRESS: '127.0.0.1:1' };
      execFile(process.execPath, [SUMMA, 'add', '3', '4'], { env, timeout: 30_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
      );
    });
    assert.equal(down.code, 1);
    assert.match(down.stderr, /may or may not have been recorded/);
    assert.match(down.stderr, /summa add 3 4 --id [0-9a-f-]{36}/);
  });

  it('lists parked outbox events and releases them to the relays', async () => {
    const eventId = '6f1c2a4e-0000-4000-8000-00000000c11a';
    await sql.query(
      `INSERT INTO calculator.outbox (event_id, topic, message_key, payload, attempts, last_error, parked_at)
       VALUES ($1, 'cli-missing-topic', 'cli-parked', '{}', 10, 'Unknown topic cli-missing-topic.', now())`,
      [eventId],
    );
    const listed = await summa('outbox', 'parked');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`^${eventId}  topic cli-missing-topic  parked .* after 10 attempts: Unknown topic cli-missing-topic\\.$`, 'm'));
    assert.match(listed.stdout, /^1 parked event\(s\)$/m);

    assert.equal((await summa('outbox', 'release')).code, 2, 'release needs event ids or --all');
    assert.equal((await summa('outbox', 'release', 'not-an-id')).code, 2);
    const released = await summa('outbox', 'release', eventId);
    assert.equal(released.code, 0, released.stderr);
    assert.match(released.stdout, /^1 event\(s\) released$/m);
    const { rows } = await sql.query('SELECT parked_at FROM calculator.outbox WHERE event_id = $1', [eventId]);
    assert.equal(rows[0].parked_at, null, 'the relays may take it again');
    assert.equal((await summa('outbox', 'release', eventId)).code, 1, 'it is no longer parked');
    await sql.query('DELETE FROM calculator.outbox WHERE event_id = $1', [eventId]);
  });
});
