// Switching a running system from the poller relay to change data capture and back, with Adds
// arriving all along, following the procedure of docs/cdc.md ("Switching"): the total stays exact
// (nothing lost, nothing counted twice) and `summa verify` finds the invariant holding.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomInt, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { ensureOutboxPublication } from '../../src/outbox/outbox-capture.ts';
import { startKafkaConnect, outboxConnectorConfig, type KafkaConnect } from '../../tools/local-stack/kafka-connect.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { createTestDatabase, testKafkaBrokers, uniqueName, type TestDatabase } from '../support/test-environment.ts';

const CONNECTOR = 'summa-outbox';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Add {
  requestId: string;
  num1: bigint;
  num2: bigint;
}

/**
 * Sends Adds one small batch after another until stopped, about one in five under an id already
 * sent (with the same numbers). A send that fails (the calculator restarting) is retried under its
 * id, as a client does, until it is acknowledged.
 */
class Sender {
  readonly sent = new Map<string, Add>();
  /** The ids acknowledged so far, each once. */
  readonly acknowledgedIds = new Set<string>();
  private stopping = false;
  private failure: unknown;
  private readonly done: Promise<void>;
  acknowledged = 0;
  retried = 0;

  constructor(private readonly calculatorUrl: string) {
    this.done = this.run().catch((error: unknown) => {
      this.failure = error;
    });
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const batch = Array.from({ length: 10 }, () => this.next());
      await Promise.all(batch.map((add) => this.sendUntilAcknowledged(add)));
    }
  }

  private next(): Add {
    const known = [...this.sent.values()];
    if (known.length > 0 && randomInt(5) === 0) return known[randomInt(known.length)]!;
    const add = { requestId: randomUUID(), num1: BigInt(randomInt(-1_000_000_000, 1_000_000_000)), num2: BigInt(randomInt(-1_000_000_000, 1_000_000_000)) };
    this.sent.set(add.requestId, add);
    return add;
  }

  private async sendUntilAcknowledged({ requestId, num1, num2 }: Add): Promise<void> {
    for (let attempt = 0; ; attempt += 1) {
      const status = await fetch(`${this.calculatorUrl}/v1/sums`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': requestId },
        body: JSON.stringify({ num1: num1.toString(), num2: num2.toString() }),
        signal: AbortSignal.timeout(10_000),
      }).then(
        async (response) => ({ code: response.status, text: await response.text() }),
        () => undefined,
      );
      if (status && (status.code === 200 || status.code === 201)) {
        this.acknowledged += 1;
        this.acknowledgedIds.add(requestId);
        return;
      }
      // Only unavailability (no answer, 503 while starting or stopping) is expected here.
      assert.ok(!status || status.code === 503, `Add answered ${status?.code}: ${status?.text}`);
      assert.ok(attempt < 600, `Add ${requestId} not acknowledged after ${attempt} attempts`);
      this.retried += 1;
      await sleep(100);
    }
  }

  /** Resolves once at least `count` more Adds were acknowledged. */
  async waitFor(count: number, timeoutMs = 60_000): Promise<void> {
    const target = this.acknowledged + count;
    const deadline = Date.now() + timeoutMs;
    while (this.acknowledged < target) {
      if (this.failure) throw this.failure;
      assert.ok(Date.now() < deadline, `only ${this.acknowledged} of ${target} Adds acknowledged within ${timeoutMs / 1000}s`);
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.done;
    if (this.failure) throw this.failure;
  }

  expectedTotal(): bigint {
    let total = 0n;
    for (const { num1, num2 } of this.sent.values()) total += num1 + num2;
    return total;
  }
}

describe('switching from the poller relay to change data capture and back', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let connect: KafkaConnect | undefined;
  let connectDir: string;
  let calculator: ServiceProcess | undefined;
  let relay: ServiceProcess | undefined;
  let totals: ServiceProcess;
  let env: Record<string, string>;
  let relayUrl: string;
  let calculatorUrl: string;
  let totalsUrl: string;
  let sender: Sender | undefined;
  const slotName = uniqueName('summa_outbox').toLowerCase();
  const groupId = uniqueName('summa-connect');

  const startCalculator = async (relayMode: 'poller' | 'debezium') => {
    await calculator?.stop();
    calculator = new ServiceProcess('calculator', { ...env, RELAY_MODE: relayMode, CAPTURE_SLOT_NAME: slotName }, `${calculatorUrl}/readyz`);
    await calculator.start();
  };

  const slot = async () =>
    (
      await sql.query<{ active: boolean; confirmed: string | null }>(
        'SELECT active, confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1',
        [slotName],
      )
    ).rows[0];

  const outboxRows = async () => Number((await sql.query<{ n: string }>('SELECT count(*)::text AS n FROM calculator.outbox')).rows[0]!.n);

  async function waitUntil(what: string | (() => string), check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      assert.ok(Date.now() < deadline, `${typeof what === 'string' ? what : what()}: not within ${timeoutMs / 1000}s`);
      await sleep(200);
    }
  }

  before(async () => {
    database = await createTestDatabase('cdc_switch');
    sql = new pg.Pool({ connectionString: database.url, max: 4 });
    ({ env, relayUrl, calculatorUrl, totalsUrl } = await serviceEnvironment({ name: 'cdc-switch', databaseUrl: database.url, partitions: 3 }));
    await startCalculator('poller');
    relay = new ServiceProcess('relay', env, `${relayUrl}/readyz`);
    totals = new ServiceProcess('totals', env, `${totalsUrl}/readyz`);
    await Promise.all([relay.start(), totals.start()]);
    // A team that runs Kafka Connect has its worker up already; the connector comes with the switch.
    connectDir = await mkdtemp(path.join(os.tmpdir(), 'summa-connect-'));
    connect = await startKafkaConnect({ dataDir: connectDir, brokers: testKafkaBrokers().join(','), groupId });
  });

  after(async () => {
    await sender?.stop().catch(() => undefined);
    await Promise.all([calculator?.stop(), relay?.stop(), totals?.stop()]);
    await connect?.stop();
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const dropped = await sql
        ?.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slotName])
        .then(() => true, () => false);
      if (dropped !== false) break;
      await sleep(200);
    }
    await sql?.end();
    await database?.drop();
    if (connectDir) await rm(connectDir, { recursive: true, force: true });
  });

  const readTotal = async () => (await (await fetch(`${totalsUrl}/total`)).json()) as { total: string; count: number };

  /** Every id acknowledged until now is applied (while more keep coming, so by id, not by count). */
  async function waitUntilAllAcknowledgedApplied(where: string): Promise<void> {
    const acknowledged = [...sender!.acknowledgedIds];
    let missing = acknowledged.length;
    await waitUntil(
      () => `${where}: every id acknowledged is applied (${missing} of ${acknowledged.length} missing)`,
      async () => {
        const { rows } = await sql.query<{ n: string }>(
          'SELECT count(DISTINCT request_id)::text AS n FROM totals.applied_events WHERE request_id = ANY($1::text[])',
          [acknowledged],
        );
        missing = acknowledged.length - Number(rows[0]!.n);
        return missing === 0;
      },
      60_000,
    );
  }

  it('loses and doubles nothing, with Adds arriving during each switch', async () => {
    sender = new Sender(calculatorUrl);
    await sender.waitFor(300);
    // A poller that is behind at the switch: its relay down for a while, so that the outbox holds
    // rows written before the slot exists, which only the poller can publish.
    await relay!.stop();
    await sender.waitFor(200);
    const leftovers = await outboxRows();
    assert.ok(leftovers >= 100, `${leftovers} rows left in the outbox by the poller before the switch`);

    // ---- poller → capture (docs/cdc.md, "Switching") ----
    // 1. The publication and the connector; its slot exists before the first write that leaves no
    //    outbox row, so every such write is in the capture.
    await ensureOutboxPublication(sql);
    const url = new URL(database.url);
    await connect!.putConnector(
      CONNECTOR,
      outboxConnectorConfig({
        database: { host: url.hostname, port: Number(url.port), user: decodeURIComponent(url.username), password: decodeURIComponent(url.password), name: url.pathname.slice(1) },
        slotName,
        topicPrefix: uniqueName('summa-cdc'),
      }),
    );
    await connect!.waitUntilRunning(CONNECTOR);
    await waitUntil('the replication slot is made and streaming', async () => (await slot())?.active === true);
    await sender.waitFor(100); // rows now both captured and polled: the totals service drops the second of each
    // 2. The calculators in RELAY_MODE=debezium.
    await startCalculator('debezium');
    // 3. The relay (back, here) publishes what the outbox still holds (rows written before the slot
    //    existed are not in the capture), then stops.
    relay = new ServiceProcess('relay', env, `${relayUrl}/readyz`);
    await relay.start();
    await waitUntil('the poller relay empties the outbox', async () => (await outboxRows()) === 0);
    await relay!.stop();
    await sender.waitFor(600);
    assert.equal(await outboxRows(), 0, 'RELAY_MODE=debezium leaves no row in the outbox');
    // With no relay left, everything so far, the poller's leftovers included, reached the totals.
    await waitUntilAllAcknowledgedApplied('capture only');

    // ---- capture → poller ----
    // 1. The relay, then the calculators in RELAY_MODE=poller.
    relay = new ServiceProcess('relay', env, `${relayUrl}/readyz`);
    await relay.start();
    await startCalculator('poller');
    // 2. Every write of a debezium-mode calculator is before this LSN: once the slot has confirmed
    //    it, each of them is in Kafka.
    const switchedAt = (await sql.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
    await waitUntil('the capture confirms every write of the debezium-mode calculator', async () => {
      const { rows } = await sql.query<{ caught_up: boolean }>(
        'SELECT confirmed_flush_lsn >= $2::pg_lsn AS caught_up FROM pg_replication_slots WHERE slot_name = $1',
        [slotName, switchedAt],
      );
      return rows[0]?.caught_up === true;
    });
    // 3. The connector removed and its slot dropped, so that it holds no WAL.
    await connect!.deleteConnector(CONNECTOR);
    await waitUntil('the slot is dropped', async () =>
      sql.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slotName]).then(
        () => true,
        () => false, // still active until the task has stopped
      ),
    );
    assert.equal(await slot(), undefined);
    await sender.waitFor(300);
    await sender.stop();

    const unique = sender.sent.size;
    assert.ok(sender.acknowledged >= 1_300, `${sender.acknowledged} Adds acknowledged`);
    assert.ok(sender.acknowledged > unique, 'the workload repeats ids');
    let total = await readTotal();
    const deadline = Date.now() + 90_000;
    while (total.count < unique && Date.now() < deadline) {
      await sleep(200);
      total = await readTotal();
    }
    assert.equal(total.count, unique, 'each request counted once');
    assert.equal(BigInt(total.total), sender.expectedTotal());
    await sleep(1_000); // a late duplicate would show up here
    assert.equal((await readTotal()).count, unique);

    const verify = await promisify(execFile)(process.execPath, [path.join(ROOT, 'bin', 'summa.mjs'), 'verify', '--wait', '60'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: database.url },
    }).catch((error: { code?: number; stdout?: string; stderr?: string }) => assert.fail(`summa verify exited ${error.code}:\n${error.stdout}\n${error.stderr}`));
    assert.match(verify.stdout, /exit code 0/);
  });
});
