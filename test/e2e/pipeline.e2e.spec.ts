import assert from 'node:assert/strict';
import { randomInt, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { CalculatorClient } from '../../tools/lib/grpc-clients.ts';
import { killInCommitWindow, scrapeTotals } from '../support/commit-window.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

const UNIQUE_REQUESTS = 2_000;
const SEQUENTIAL_RETRIES = 200; // repeated after the first answer came back
const CONCURRENT_DUPLICATES = 100; // sent twice at the same moment
const CLIENTS = 24;
const NEAR_2_62 = 2n ** 62n;

interface Sent {
  requestId: string;
  num1: bigint;
  num2: bigint;
}

/** ±(2^62 − r): large enough that the total leaves int64 quickly, small enough that each sum fits. */
function nearTwoToThe62(): bigint {
  const magnitude = NEAR_2_62 - BigInt(randomInt(1, 1_000_000));
  return randomInt(2) === 0 ? magnitude : -magnitude;
}

describe('the whole pipeline as real processes', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let calculator: ServiceProcess;
  let relay: ServiceProcess;
  let totals: ServiceProcess;
  let totalsUrl: string;
  let calculatorHttp: string;
  let grpcAddress: string;
  let kafka: { brokers: string[]; topic: string; groupId: string };

  before(async () => {
    database = await createTestDatabase('e2e');
    sql = new pg.Pool({ connectionString: database.url });
    const { env, relayUrl, ...where } = await serviceEnvironment({ name: 'e2e', databaseUrl: database.url, partitions: 4 });
    ({ grpcAddress, calculatorUrl: calculatorHttp, totalsUrl } = where);
    kafka = { brokers: env.KAFKA_BROKERS!.split(','), topic: env.KAFKA_TOPIC!, groupId: env.TOTALS_GROUP_ID! };
    calculator = new ServiceProcess('calculator', env, `${calculatorHttp}/readyz`);
    // A short lease: the events of a relay killed mid-publish are taken over within seconds.
    relay = new ServiceProcess('relay', { ...env, RELAY_LEASE_MS: '3000' }, `${relayUrl}/readyz`);
    totals = new ServiceProcess('totals', env, `${totalsUrl}/readyz`);
    await calculator.start();
    await Promise.all([relay.start(), totals.start()]);
  });

  after(async () => {
    await Promise.all([calculator?.stop(), relay?.stop(), totals?.stop()]);
    await sql?.end();
    await database?.drop();
  });

  const readTotal = async () => (await (await fetch(`${totalsUrl}/total`)).json()) as { total: string; count: number };

  async function waitForCount(count: number, timeoutMs = 90_000) {
    const deadline = Date.now() + timeoutMs;
    let last = await readTotal();
    while (last.count < count && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      last = await readTotal();
    }
    return last;
  }

  it('counts every acknowledged request exactly once, across retries and restarts', async (t) => {
    const requests: Sent[] = Array.from({ length: UNIQUE_REQUESTS }, () => ({
      requestId: randomUUID(),
      num1: nearTwoToThe62(),
      num2: nearTwoToThe62(),
    }));
    const acked = new Map<string, bigint>();
    let replays = 0;
    const clients = Array.from({ length: CLIENTS }, () => new CalculatorClient(grpcAddress));

    // A quarter goes over HTTP, the rest over gRPC; the answer must be the same either way.
    const send = async (request: Sent, index: number) => {
      let sum: string;
      let replayed: boolean;
      if (index % 4 === 0) {
        const response = await fetch(`${calculatorHttp}/v1/sums`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': request.requestId },
          body: JSON.stringify({ num1: request.num1.toString(), num2: request.num2.toString() }),
        });
        assert.ok(response.status === 200 || response.status === 201, `HTTP ${response.status}`);
        ({ sum, replayed } = (await response.json()) as { sum: string; replayed: boolean });
      } else {
        ({ sum, replayed } = await clients[index % CLIENTS]!.add(request));
      }
      assert.equal(BigInt(sum), request.num1 + request.num2);
      if (replayed) replays += 1;
      acked.set(request.requestId, BigInt(sum));
    };

    const duplicated = new Set(requests.slice(0, CONCURRENT_DUPLICATES).map((r) => r.requestId));
    let next = 0;
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (next < requests.length) {
          const index = next++;
          const request = requests[index]!;
          if (duplicated.has(request.requestId)) await Promise.all([send(request, index), send(request, index + 1)]);
          else await send(request, index);
        }
      }),
    );
    const retried = requests.slice(-SEQUENTIAL_RETRIES);
    await Promise.all(retried.map((request, index) => send(request, index)));
    for (const client of clients) client.close();

    const totalCalls = UNIQUE_REQUESTS + CONCURRENT_DUPLICATES + SEQUENTIAL_RETRIES;
    assert.ok((CONCURRENT_DUPLICATES + SEQUENTIAL_RETRIES) / totalCalls >= 0.1);
    assert.equal(acked.size, UNIQUE_REQUESTS);
    assert.equal(replays, CONCURRENT_DUPLICATES + SEQUENTIAL_RETRIES, 'every repeated id is answered as a replay');
    const expected = [...acked.values()].reduce((total, sum) => total + sum, 0n);

    const settled = await waitForCount(UNIQUE_REQUESTS);
    assert.equal(settled.count, UNIQUE_REQUESTS);
    assert.equal(BigInt(settled.total), expected);
    assert.equal(settled.total, expected.toString());

    const applied = await sql.query<{ request_id: string; times: string }>(
      'SELECT request_id, count(*) AS times FROM totals.applied_events GROUP BY request_id',
    );
    assert.equal(applied.rows.length, UNIQUE_REQUESTS);
    assert.ok(applied.rows.every((row) => row.times === '1' && acked.has(row.request_id)));
    const sample = requests[7]!;
    const lookup = await fetch(`${totalsUrl}/sums/${sample.requestId}`);
    assert.equal(lookup.status, 200);
    assert.equal(((await lookup.json()) as { sum: string }).sum, (sample.num1 + sample.num2).toString());
    assert.equal((await fetch(`${totalsUrl}/sums/never-sent`)).status, 404);

    // Then a kill -9 of the consumer while records flow, landed between a batch's database commit
    // and its Kafka commit (see test/support/commit-window.ts), and of the relay: the records in the
    // consumer's gap are delivered again to its successor, which must skip every one of them.
    const flowing = { stop: false, acked: new Map<string, bigint>() };
    const senders = Array.from({ length: 4 }, async () => {
      const client = new CalculatorClient(grpcAddress);
      try {
        while (!flowing.stop && flowing.acked.size < 50_000) {
          const request = { requestId: randomUUID(), num1: nearTwoToThe62(), num2: nearTwoToThe62() };
          const { sum } = await client.add(request);
          assert.equal(BigInt(sum), request.num1 + request.num2);
          flowing.acked.set(request.requestId, BigInt(sum));
        }
      } finally {
        client.close();
      }
    });
    let kill: Awaited<ReturnType<typeof killInCommitWindow>>;
    try {
      kill = await killInCommitWindow({ pid: totals.pid, url: totalsUrl, sql, ...kafka }, () => totals.kill(), 60_000);
      await relay.kill();
    } finally {
      flowing.stop = true;
      await Promise.all(senders);
    }
    assert.ok(kill.landed, `no kill -9 landed between a database commit and its Kafka commit in ${kill.attempts} tries`);
    assert.ok(kill.records > 0);
    await Promise.all([totals.start(), relay.start()]);

    const everything = new Map([...acked, ...flowing.acked]);
    const final = await waitForCount(everything.size);
    assert.equal(final.count, everything.size);
    assert.equal(final.total, [...everything.values()].reduce((total, sum) => total + sum, 0n).toString());
    const appliedOnce = await sql.query<{ events: string; requests: string }>(
      'SELECT count(*) AS events, count(DISTINCT request_id) AS requests FROM totals.applied_events',
    );
    assert.deepEqual(appliedOnce.rows[0], { events: String(everything.size), requests: String(everything.size) });
    // The redelivery really happened: the restarted consumer was handed the gap and skipped it all.
    let restarted = await scrapeTotals(totalsUrl);
    for (const deadline = Date.now() + 10_000; restarted.duplicatesSkipped < kill.records && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      restarted = await scrapeTotals(totalsUrl);
    }
    assert.ok(
      restarted.duplicatesSkipped >= kill.records,
      `${kill.records} records were applied but not committed to Kafka when the consumer died; its successor skipped ${restarted.duplicatesSkipped} duplicates`,
    );
    t.diagnostic(
      `kill -9 landed after ${kill.attempts} freeze(s) with ${kill.records} record(s) applied but not committed to Kafka; ` +
        `${flowing.acked.size} requests sent meanwhile; the successor skipped ${restarted.duplicatesSkipped} duplicate(s)`,
    );
    assert.ok(restarted.recordsConsumed > restarted.eventsApplied, 'the successor consumed more records than it applied events');
    // The killed relay's claimed events wait out their lease, then are published again (and skipped
    // as duplicates) and deleted.
    let pending = '';
    for (const deadline = Date.now() + 30_000; pending !== '0' && Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 200))) {
      pending = (await sql.query<{ pending: string }>('SELECT count(*) AS pending FROM calculator.outbox')).rows[0]!.pending;
    }
    assert.equal(pending, '0', 'the outbox drains');
  });
});
