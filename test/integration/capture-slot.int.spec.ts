// The outbox capture slot's figures on a real PostgreSQL (the suite's server runs wal_level=logical):
// a logical slot nobody consumes retains the WAL written after it, and the calculator's gauges and
// `summa status`'s probe say so. test_decoding stands in for pgoutput: what is measured is the slot.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { Registry } from 'prom-client';
import { startCalculator } from '../../src/calculator/calculator-service.ts';
import { readCalculatorConfig } from '../../src/calculator/config.ts';
import { probeCaptureSlot } from '../../src/cli/status-postgres.ts';
import { CaptureSlotMonitor } from '../../src/outbox/capture-slot-monitor.ts';
import { gradeCaptureSlot, readCaptureSlot } from '../../src/outbox/capture-slot.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { createTestDatabase, uniqueName, type TestDatabase } from '../support/test-environment.ts';

const logger = createLogger('capture-slot-test', { LOG_LEVEL: 'silent' });

async function gauge(registry: Registry, name: string): Promise<number> {
  const metric = await registry.getSingleMetric(name)!.get();
  return metric.values[0]!.value;
}

describe('the outbox capture slot on a real PostgreSQL', { timeout: 60_000 }, () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  const slot = uniqueName('slot').toLowerCase().replace(/[^a-z0-9_]/g, '_');

  before(async () => {
    database = await createTestDatabase('capture_slot');
    pool = new pg.Pool({ connectionString: database.url, max: 2 });
    await pool.query('CREATE TABLE filler (id bigserial PRIMARY KEY, body text NOT NULL)');
  });

  after(async () => {
    // A logical slot keeps its database from being dropped.
    await pool.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]).catch(() => {});
    await pool.end();
    await database.drop();
  });

  const writeWal = (megabytes: number) =>
    pool.query(`INSERT INTO filler (body) SELECT repeat(md5(g::text), 32) FROM generate_series(1, $1::int) g`, [megabytes * 1024]);

  it('reads a missing slot as missing, and the monitor says not active', async () => {
    assert.deepEqual(await readCaptureSlot(pool, slot), { exists: false });
    const registry = new Registry();
    const monitor = new CaptureSlotMonitor(pool, { slotName: slot, maxRetainedBytes: 1024 ** 3, maxInactiveSeconds: 300 }, registry, logger);
    await monitor.sample();
    assert.equal(await gauge(registry, 'summa_outbox_capture_slot_active'), 0);
    assert.equal(await gauge(registry, 'summa_outbox_capture_slot_retained_bytes'), 0);
  });

  it('retains the WAL written while nobody consumes the slot, and lets go of what is consumed', async () => {
    await pool.query(`SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, [slot]);
    const registry = new Registry();
    const limits = { slotName: slot, maxRetainedBytes: 2 * 1024 * 1024, maxInactiveSeconds: 300 };
    const monitor = new CaptureSlotMonitor(pool, limits, registry, logger);

    const first = await monitor.sample();
    assert.ok(first?.exists);
    assert.equal(first.active, false);
    const retainedBefore = await gauge(registry, 'summa_outbox_capture_slot_retained_bytes');
    assert.equal(await gauge(registry, 'summa_outbox_capture_slot_active'), 0);
    assert.equal(gradeCaptureSlot(first, limits).level, 'ok');

    await writeWal(4);
    const second = await monitor.sample();
    assert.ok(second?.exists);
    const retainedAfter = await gauge(registry, 'summa_outbox_capture_slot_retained_bytes');
    assert.ok(retainedAfter - retainedBefore >= 4 * 1024 * 1024, `retained ${retainedBefore} -> ${retainedAfter} after 4 MiB of rows`);
    assert.ok((await gauge(registry, 'summa_outbox_capture_slot_unconfirmed_bytes')) >= 4 * 1024 * 1024);
    const grade = gradeCaptureSlot(second, limits);
    assert.equal(grade.level, 'warning');
    assert.match(grade.warnings.join(), /retains more than 2.0 MiB of WAL \(CAPTURE_SLOT_MAX_RETAINED_MB\)/);

    // What `summa status` reads, through its own connection.
    const probed = await probeCaptureSlot(database.url, slot);
    assert.ok('exists' in probed && probed.exists);
    assert.ok(probed.retainedBytes >= retainedAfter);

    // Consuming confirms the changes: what is not yet confirmed falls back to (about) nothing.
    await pool.query('SELECT count(*) FROM pg_logical_slot_get_changes($1, NULL, NULL)', [slot]);
    await monitor.sample();
    assert.ok((await gauge(registry, 'summa_outbox_capture_slot_unconfirmed_bytes')) < 64 * 1024);
  });

  it('knows how long the slot has been inactive (PostgreSQL 17 on)', async () => {
    const version = Number((await pool.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]!.v);
    const reading = await readCaptureSlot(pool, slot);
    assert.ok(reading.exists);
    if (version >= 170000) {
      assert.ok(reading.inactiveSeconds !== null && reading.inactiveSeconds >= 0, `inactiveSeconds ${reading.inactiveSeconds}`);
    } else {
      assert.equal(reading.inactiveSeconds, null);
    }
  });

  it("the status probe gives an error, not a throw, when PostgreSQL cannot be reached", async () => {
    const url = new URL(database.url);
    url.port = '1';
    const probed = await probeCaptureSlot(url.toString(), slot, 500);
    assert.ok('error' in probed);
  });
});

describe('a calculator in RELAY_MODE=debezium', { timeout: 60_000 }, () => {
  it("makes the outbox's publication, and serves the slot's gauges on /metrics", async () => {
    const database = await createTestDatabase('capture_calc');
    const slot = uniqueName('calc_slot').toLowerCase().replace(/[^a-z0-9_]/g, '_');
    const sql = new pg.Pool({ connectionString: database.url, max: 1 });
    const config = readCalculatorConfig({
      DATABASE_URL: database.url,
      CALCULATOR_GRPC_PORT: '0',
      CALCULATOR_HTTP_PORT: '0',
      KAFKA_TOPIC: 'capture-slot-test',
      RELAY_MODE: 'debezium',
      CAPTURE_SLOT_NAME: slot,
    });
    const calculator = await startCalculator(config, logger);
    try {
      const { rows } = await sql.query<{ pubinsert: boolean; pubdelete: boolean }>(`SELECT pubinsert, pubdelete FROM pg_publication WHERE pubname = 'summa_outbox'`);
      assert.deepEqual(rows, [{ pubinsert: true, pubdelete: false }]);
      await sql.query(`SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, [slot]);
      // The first sample ran at start, before the slot existed; the next comes within 5 s.
      const deadline = Date.now() + 15_000;
      let retained: number | undefined;
      while (Date.now() < deadline && !retained) {
        const text = await (await fetch(`http://127.0.0.1:${calculator.httpPort}/metrics`)).text();
        assert.match(text, /^summa_outbox_capture_slot_active(\{[^}]*\})? 0$/m);
        retained = Number(/^summa_outbox_capture_slot_retained_bytes(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1]);
        if (!retained) await new Promise((resolve) => setTimeout(resolve, 500));
      }
      assert.ok(retained && retained > 0, `summa_outbox_capture_slot_retained_bytes ${retained}`);
    } finally {
      await calculator.stop();
      await sql.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]).catch(() => {});
      await sql.end();
      await database.drop();
    }
  });
});
