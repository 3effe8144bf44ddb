import assert from 'node:assert/strict';
import { randomInt, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { CalculatorClient } from '../../tools/lib/grpc-clients.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';
import { runSumma } from '../support/summa-cli.ts';


// Windows of seconds instead of days, so that a run sees the services make, switch and drop their
// partitions by themselves: requests kept 4 to 5 s, applied events as long.
const WINDOWS = {
  IDEMPOTENCY_WINDOW_SECONDS: '4',
  IDEMPOTENCY_PARTITION_SECONDS: '1',
  DEDUP_WINDOW_SECONDS: '4',
  DEDUP_PARTITION_SECONDS: '1',
};
const PARENTS = { calculator: 'calculator.requests', totals: 'totals.applied_events' } as const;

interface Answer {
  sum: bigint;
  replayed: boolean;
}

/** The partitions attached to each parent, and every one ever seen, as the services change them. */
class PartitionWatcher {
  readonly seen = { calculator: new Set<string>(), totals: new Set<string>() };
  private running = true;
  private readonly loop: Promise<void>;

  constructor(private readonly sql: pg.Pool) {
    this.loop = (async () => {
      while (this.running) {
        await this.look();
        await sleep(100);
      }
    })();
  }

  async attached(side: keyof typeof PARENTS): Promise<Set<string>> {
    const { rows } = await this.sql.query<{ name: string }>(
      'SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass',
      [PARENTS[side]],
    );
    return new Set(rows.map((row) => row.name));
  }

  private async look(): Promise<void> {
    for (const side of ['calculator', 'totals'] as const) for (const name of await this.attached(side)) this.seen[side].add(name);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

describe('bounded state end to end: the services keep requests and applied events for short windows', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let calculator: ServiceProcess;
  let relay: ServiceProcess;
  let totals: ServiceProcess;
  let totalsUrl: string;
  let calculatorHttp: string;
  let grpcAddress: string;
  /** Set once the first test saw every acknowledged request in the total. */
  let settled = false;

  before(async () => {
    database = await createTestDatabase('e2e_retention');
    sql = new pg.Pool({ connectionString: database.url, max: 4 });
    const { env, relayUrl, ...where } = await serviceEnvironment({ name: 'e2e-retention', databaseUrl: database.url, partitions: 3 });
    ({ grpcAddress, calculatorUrl: calculatorHttp, totalsUrl } = where);
    calculator = new ServiceProcess('calculator', { ...env, ...WINDOWS }, `${calculatorHttp}/readyz`);
    relay = new ServiceProcess('relay', { ...env, ...WINDOWS }, `${relayUrl}/readyz`);
    totals = new ServiceProcess('totals', { ...env, ...WINDOWS }, `${totalsUrl}/readyz`);
    await calculator.start();
    await Promise.all([relay.start(), totals.start()]);
  });

  after(async () => {
    await Promise.all([calculator?.stop(), relay?.stop(), totals?.stop()]);
    await sql?.end();
    await database?.drop();
  });

  it('replays within the window, drops whole partitions after it, frees old ids, and keeps the total exact', { timeout: 120_000 }, async (t) => {
    const grpc = new CalculatorClient(grpcAddress);
    const watcher = new PartitionWatcher(sql);
    // Every acknowledged new request, in order: an id used again after the window is a second request.
    const acknowledged: bigint[] = [];
    let calls = 0;
    const add = async (requestId: string, num1: bigint, num2: bigint): Promise<Answer> => {
      let answer: Answer;
      if (calls++ % 3 === 0) {
        const response = await fetch(`${calculatorHttp}/v1/sums`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': requestId },
          body: JSON.stringify({ num1: num1.toString(), num2: num2.toString() }),
        });
        assert.ok(response.status === 200 || response.status === 201, `HTTP ${response.status}: ${await response.clone().text()}`);
        const body = (await response.json()) as { sum: string; replayed: boolean };
        answer = { sum: BigInt(body.sum), replayed: body.replayed };
      } else {
        const response = await grpc.add({ requestId, num1, num2 });
        answer = { sum: BigInt(response.sum), replayed: response.replayed };
      }
      assert.equal(answer.sum, num1 + num2);
      if (!answer.replayed) acknowledged.push(answer.sum);
      return answer;
    };
    const traffic = async (count: number) => {
      await Promise.all(
        Array.from({ length: count }, () => add(randomUUID(), BigInt(randomInt(-1_000_000, 1_000_000)), BigInt(randomInt(-1_000_000, 1_000_000)))),
      );
    };
    const generationOf = async (requestId: string) =>
      (await sql.query<{ generation: number }>('SELECT generation FROM calculator.requests WHERE request_id = $1', [requestId])).rows[0]?.generation;

    try {
      const early = { id: `early-${randomUUID()}`, num1: 1_000_000_007n, num2: 5n };
      assert.equal((await add(early.id, early.num1, early.num2)).replayed, false);
      const earlyGeneration = (await generationOf(early.id))!;
      assert.notEqual(earlyGeneration, undefined);

      // Traffic across several periods; the early id, sent again within the window, replays
      // (over both transports, from later periods than its own).
      const startedAt = Date.now();
      let retried = 0;
      while (Date.now() - startedAt < 3_000) {
        await traffic(15);
        const again = await add(early.id, early.num1, early.num2);
        assert.deepEqual(again, { sum: early.num1 + early.num2, replayed: true }, 'a retry within the window replays');
        retried += 1;
        await sleep(150);
      }
      assert.ok(retried >= 2);
      assert.equal(await generationOf(early.id), earlyGeneration, 'recorded once, where it was first written');
      const { rows: moved } = await sql.query<{ current: number }>(
        `SELECT generation AS current FROM calculator.partitions WHERE table_name = 'requests' AND started_at IS NOT NULL AND ended_at IS NULL`,
      );
      assert.ok(moved[0]!.current >= earlyGeneration + 2, `the writes moved on: generation ${earlyGeneration} then ${moved[0]!.current}`);

      // Once its period is older than the window, the calculator drops its partition, and the id is free.
      const earlyPartition = `requests_g${earlyGeneration}`;
      for (const deadline = Date.now() + 15_000; (await watcher.attached('calculator')).has(earlyPartition); ) {
        assert.ok(Date.now() < deadline, `${earlyPartition} was not dropped within 15 s`);
        await traffic(10);
        await sleep(200);
      }
      assert.equal(await generationOf(early.id), undefined, 'the old request row is gone');
      const reused = await add(early.id, 40n, 2n);
      assert.deepEqual(reused, { sum: 42n, replayed: false }, 'after the window a request under the old id is new');

      // The totals service drops its own partitions of applied events the same way.
      const droppedApplied = async () =>
        (await sql.query<{ generation: number }>(`SELECT generation FROM totals.partitions WHERE table_name = 'applied_events' AND dropped_at IS NOT NULL`)).rows.map(
          (row) => row.generation,
        );
      for (const deadline = Date.now() + 15_000; (await droppedApplied()).length < 2; ) {
        assert.ok(Date.now() < deadline, 'the totals service dropped fewer than two partitions within 15 s');
        await traffic(10);
        await sleep(200);
      }
      await traffic(10);

      // The total and count are exact across the drops: every acknowledged request added once.
      const expected = { total: acknowledged.reduce((total, sum) => total + sum, 0n).toString(), count: acknowledged.length };
      let total = { total: '', count: -1 };
      for (const deadline = Date.now() + 20_000; total.count < expected.count && Date.now() < deadline; await sleep(200)) {
        total = (await (await fetch(`${totalsUrl}/total`)).json()) as { total: string; count: number };
      }
      assert.deepEqual({ total: total.total, count: total.count }, expected);
      const { rows: quarantined } = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM totals.rejected_records');
      assert.equal(quarantined[0]!.n, 0, 'nothing was older than the dedup window');
      await watcher.stop();

      // What the services did with their partitions, as the catalogues and PostgreSQL tell it.
      for (const [side, schema] of [
        ['calculator', 'calculator'],
        ['totals', 'totals'],
      ] as const) {
        const { rows: catalogue } = await sql.query<{ table_name: string; generation: number; started: boolean; dropped: boolean; rows: string | null }>(
          `SELECT table_name, generation, started_at IS NOT NULL AS started, dropped_at IS NOT NULL AS dropped, row_count::text AS rows FROM ${schema}.partitions ORDER BY generation`,
        );
        const dropped = catalogue.filter((g) => g.dropped);
        const attached = await watcher.attached(side);
        assert.ok(dropped.length >= 2, `${schema}: dropped ${dropped.length} generation(s)`);
        assert.ok(catalogue.some((g) => !g.started), `${schema}: partitions are made ahead`);
        for (const g of dropped) {
          const name = `${g.table_name}_g${g.generation}`;
          assert.ok(!attached.has(name), `${name} is dropped in the catalogue but still attached`);
          assert.equal((await sql.query('SELECT 1 FROM pg_class WHERE relname = $1', [name])).rowCount, 0, `${name} is gone`);
          assert.notEqual(g.rows, null, `${name} was checkpointed before it was dropped`);
        }
        const witnessedDrops = dropped.filter((g) => watcher.seen[side].has(`${g.table_name}_g${g.generation}`));
        assert.ok(witnessedDrops.length >= 1, `${schema}: a partition was seen attached, then gone`);
        for (const g of catalogue.filter((g) => !g.dropped)) assert.ok(attached.has(`${g.table_name}_g${g.generation}`), `${g.table_name}_g${g.generation} is attached`);
      }
      // The rows dropped are those the catalogue counted; the rest are still there.
      const { rows: accounted } = await sql.query<{ dropped: string; kept: string }>(
        `SELECT (SELECT coalesce(sum(row_count), 0) FROM calculator.partitions WHERE dropped_at IS NOT NULL)::text AS dropped,
                (SELECT count(*) FROM calculator.requests)::text AS kept`,
      );
      assert.equal(BigInt(accounted[0]!.dropped) + BigInt(accounted[0]!.kept), BigInt(acknowledged.length));

      const metrics = await (await fetch(`${calculatorHttp}/metrics`)).text();
      const droppedMetric = /^summa_retention_rows_dropped\{[^}]*table="calculator.requests"[^}]*\} (\d+)/m.exec(metrics);
      assert.ok(droppedMetric && Number(droppedMetric[1]) > 0, 'summa_retention_rows_dropped counts the dropped requests');

      settled = true;
      t.diagnostic(`${acknowledged.length} requests acknowledged, ${retried} replays of the early id`);
    } finally {
      grpc.close();
      await watcher.stop();
    }
  });

  // `summa verify` audits the periods still kept row by row and the dropped ones through their
  // checkpoints, and says so.
  it('summa verify passes once rows were dropped, and says what it checked through checkpoints', async (t) => {
    assert.ok(settled, 'the pipeline settled in the test before');
    const verify = await runSumma(['verify'], { DATABASE_URL: database.url });
    t.diagnostic(`summa verify exited ${verify.code}:\n${verify.output}`);
    assert.equal(verify.code, 0, verify.output);
    assert.match(verify.output, /checked through checkpoints: [1-9]\d* dropped period/);
  });
});

