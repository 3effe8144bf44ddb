import { request as httpRequest } from 'node:http';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import pg from 'pg';
import { startCalculator, type RunningCalculator } from '../../src/calculator/calculator-service.ts';
import { readCalculatorConfig } from '../../src/calculator/config.ts';
import { CALCULATOR_MIGRATIONS, CALCULATOR_SCHEMA } from '../../src/calculator/schema.ts';
import { decodeSumAccepted } from '../../src/events/sum-accepted.ts';
import { migrate } from '../../src/platform/db/migrate.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { CalculatorClient, checkHealth, listServicesByReflection } from '../../tools/lib/grpc-clients.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';
import { grpcurl, missingTool } from '../support/tools.ts';

describe('calculator against real PostgreSQL', () => {
  let database: TestDatabase;
  let calculator: RunningCalculator;
  let client: CalculatorClient;
  let sql: pg.Pool;
  let http: string;

  before(async () => {
    database = await createTestDatabase('calculator');
    const config = readCalculatorConfig({
      DATABASE_URL: database.url,
      CALCULATOR_GRPC_PORT: '0',
      CALCULATOR_HTTP_PORT: '0',
      KAFKA_TOPIC: 'calculator-test',
    });
    calculator = await startCalculator(config, createLogger('calculator', { LOG_LEVEL: 'silent' }));
    client = new CalculatorClient(`127.0.0.1:${calculator.grpcPort}`);
    sql = new pg.Pool({ connectionString: database.url });
    http = `http://127.0.0.1:${calculator.httpPort}`;
  });

  after(async () => {
    client?.close();
    await sql?.end();
    await calculator?.stop();
    await database?.drop();
  });

  const outboxFor = async (requestId: string) =>
    (await sql.query<{ payload: string; topic: string }>('SELECT payload, topic FROM calculator.outbox WHERE message_key = $1', [requestId])).rows;

  it('answers Add and writes exactly one outbox event in the same commit', async () => {
    const response = await client.add({ num1: 5, num2: 10, requestId: 'first' });
    assert.deepEqual(response, { sum: '15', request_id: 'first', replayed: false });
    const outbox = await outboxFor('first');
    assert.equal(outbox.length, 1);
    assert.equal(outbox[0]!.topic, 'calculator-test');
    const event = decodeSumAccepted(outbox[0]!.payload);
    assert.equal(event.sum, 15n);
    assert.equal(event.requestId, 'first');
  });

  it('replays a retried request with the original answer and no second event', async () => {
    await client.add({ num1: '4611686018427387904', num2: '4611686018427387903', requestId: 'retry' });
    const replay = await client.add({ num1: '4611686018427387904', num2: '4611686018427387903', requestId: 'retry' });
    assert.deepEqual(replay, { sum: '9223372036854775807', request_id: 'retry', replayed: true });
    assert.equal((await outboxFor('retry')).length, 1);
  });

  it('answers concurrent duplicates once as new and otherwise as replays', async () => {
    const responses = await Promise.all(Array.from({ length: 40 }, () => client.add({ num1: 7, num2: 8, requestId: 'burst' })));
    assert.equal(responses.filter((r) => !r.replayed).length, 1);
    assert.ok(responses.every((r) => r.sum === '15' && r.request_id === 'burst'));
    assert.equal((await outboxFor('burst')).length, 1);
  });

  it('refuses other numbers under a used request id with ALREADY_EXISTS', async () => {
    await client.add({ num1: 1, num2: 1, requestId: 'taken' });
    await assert.rejects(client.add({ num1: 1, num2: 2, requestId: 'taken' }), (error: any) => {
      assert.equal(error.code, status.ALREADY_EXISTS);
      assert.match(error.details, /already used/);
      return true;
    });
    assert.equal((await outboxFor('taken')).length, 1);
  });

  // A NOTIFY inside the write transaction makes its COMMIT take PostgreSQL's cluster-wide notify
  // lock, which serialises the commits of every calculator (test/integration/notify-lock.int.spec.ts
  // shows what that does). The relays are woken after the commit instead.
  it('leaves no trigger on the outbox that notifies inside the write transaction', async () => {
    const { rows } = await sql.query<{ tgname: string; source: string }>(
      `SELECT t.tgname, p.prosrc AS source
       FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
       WHERE t.tgrelid = 'calculator.outbox'::regclass AND NOT t.tgisinternal`,
    );
    const notifying = rows.filter((row) => /notify/i.test(row.source)).map((row) => row.tgname);
    assert.deepEqual(notifying, []);
  });

  it('assigns a request id when the caller gives none', async () => {
    const response = await client.add({ num1: 2, num2: 2 });
    assert.match(response.request_id, /^[0-9a-f-]{36}$/);
    assert.equal((await outboxFor(response.request_id)).length, 1);
  });

  it('refuses an int64 overflow with OUT_OF_RANGE and an over-long id with INVALID_ARGUMENT', async () => {
    await assert.rejects(client.add({ num1: '9223372036854775807', num2: 1, requestId: 'overflow' }), { code: status.OUT_OF_RANGE });
    await assert.rejects(client.add({ num1: 1, num2: 1, requestId: 'x'.repeat(129) }), { code: status.INVALID_ARGUMENT });
    assert.equal((await outboxFor('overflow')).length, 0);
  });

  it('serves the package-less CalculatorService, reflection and health', async () => {
    const compat = new CalculatorClient(`127.0.0.1:${calculator.grpcPort}`, { compat: true });
    try {
      assert.equal((await compat.add({ num1: 5, num2: 10 })).sum, '15');
    } finally {
      compat.close();
    }
    const services = await listServicesByReflection(`127.0.0.1:${calculator.grpcPort}`);
    assert.ok(services.includes('summa.v1.CalculatorService'), services.join());
    assert.ok(services.includes('CalculatorService'), services.join());
    assert.ok(services.includes('grpc.health.v1.Health'), services.join());
    assert.equal(await checkHealth(`127.0.0.1:${calculator.grpcPort}`, 'summa.v1.CalculatorService'), 'SERVING');
  });

  it('answers grpcurl through reflection, under both service names, as the README shows', { skip: missingTool('grpcurl') }, async () => {
    const address = `127.0.0.1:${calculator.grpcPort}`;
    const listed = (await grpcurl('-plaintext', address, 'list')).split('\n');
    for (const service of ['summa.v1.CalculatorService', 'CalculatorService', 'grpc.health.v1.Health']) {
      assert.ok(listed.includes(service), listed.join());
    }
    const plainOutput = await grpcurl('-plaintext', '-d', '{"num1": 5, "num2": 10}', address, 'CalculatorService/Add');
    const plain = JSON.parse(plainOutput);
    assert.equal(plain.sum, '15', plainOutput);
    assert.match(plain.requestId, /^[0-9a-f-]{36}$/, plainOutput);
    const body = '{"num1": 5, "num2": 10, "request_id": "grpcurl-42"}';
    const first = JSON.parse(await grpcurl('-plaintext', '-d', body, address, 'summa.v1.CalculatorService/Add'));
    assert.deepEqual(first, { sum: '15', requestId: 'grpcurl-42' }); // proto3 JSON leaves out replayed=false
    const again = JSON.parse(await grpcurl('-plaintext', '-d', body, address, 'summa.v1.CalculatorService/Add'));
    assert.deepEqual(again, { sum: '15', requestId: 'grpcurl-42', replayed: true });
    assert.equal((await outboxFor('grpcurl-42')).length, 1);
    await assert.rejects(
      grpcurl('-plaintext', '-d', '{"num1": "9223372036854775807", "num2": 1}', address, 'CalculatorService/Add'),
      /OutOfRange/,
    );
  });

  describe('HTTP POST /v1/sums', () => {
    const post = (body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${http}/v1/sums`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });

    it('answers 201 first and 200 on a replay keyed by Idempotency-Key, sums as strings', async () => {
      const first = await post({ num1: '-4611686018427387904', num2: 1 }, { 'idempotency-key': 'http-1' });
      assert.equal(first.status, 201);
      assert.deepEqual(await first.json(), { sum: '-4611686018427387903', requestId: 'http-1', replayed: false });
      const again = await post({ num1: '-4611686018427387904', num2: 1 }, { 'idempotency-key': 'http-1' });
      assert.equal(again.status, 200);
      assert.deepEqual(await again.json(), { sum: '-4611686018427387903', requestId: 'http-1', replayed: true });
      assert.equal((await outboxFor('http-1')).length, 1);
    });

    it('takes the key from a requestId field and shares it with gRPC', async () => {
      assert.equal((await post({ num1: 3, num2: 4, requestId: 'shared' })).status, 201);
      assert.equal((await client.add({ num1: 3, num2: 4, requestId: 'shared' })).replayed, true);
    });

    it('answers 422 for a reused key with other numbers', async () => {
      await post({ num1: 1, num2: 1 }, { 'idempotency-key': 'http-taken' });
      const response = await post({ num1: 9, num2: 1 }, { 'idempotency-key': 'http-taken' });
      assert.equal(response.status, 422);
      assert.equal(((await response.json()) as any).error.code, 'ALREADY_EXISTS');
    });

    for (const [label, body, headers] of [
      ['invalid JSON', '{"num1": 1,', {}],
      ['a missing number', { num1: 1 }, {}],
      ['a float', { num1: 1.5, num2: 1 }, {}],
      ['a JSON array', [1, 2], {}],
      ['an empty Idempotency-Key', { num1: 1, num2: 2 }, { 'idempotency-key': '' }],
      ['an overflowing sum', { num1: '9223372036854775807', num2: '1' }, {}],
    ] as const) {
      it(`answers 400 with a message for ${label}`, async () => {
        const response = await post(body, headers as Record<string, string>);
        assert.equal(response.status, 400);
        const payload = (await response.json()) as { error: { code: string; message: string } };
        assert.ok(payload.error.message.length > 0);
      });
    }

    it('answers 400 when the Idempotency-Key header is given twice, rather than joining the two', async () => {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const request = httpRequest(`${http}/v1/sums`, { method: 'POST' }, (response) => {
          let text = '';
          response.on('data', (chunk) => (text += chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
        });
        request.on('error', reject);
        request.setHeader('content-type', 'application/json');
        request.setHeader('idempotency-key', ['twice-a', 'twice-b']);
        request.end(JSON.stringify({ num1: 1, num2: 2 }));
      });
      assert.equal(status, 400, body);
      assert.match(JSON.parse(body).error.message, /Idempotency-Key header once/);
      assert.equal((await outboxFor('twice-a, twice-b')).length, 0);
    });

    it('refuses an id with a lone surrogate without failing the requests recorded beside it', async () => {
      // Sent together, so that the calculator writes them in one batch.
      const answers = await Promise.all([
        post('{"num1": 1, "num2": 2, "requestId": "lone-\\ud800"}'),
        ...[1, 2, 3, 4].map((n) => post({ num1: n, num2: 1, requestId: `lone-neighbour-${n}` })),
      ]);
      assert.equal(answers[0]!.status, 400);
      assert.match(((await answers[0]!.json()) as any).error.message, /Unicode/);
      for (const answer of answers.slice(1)) assert.equal(answer.status, 201, await answer.text());
      const stored = await sql.query("SELECT request_id FROM calculator.requests WHERE request_id LIKE 'lone-%' AND request_id NOT LIKE 'lone-neighbour-%'");
      assert.equal(stored.rowCount, 0);
    });

    it('takes the key from a request_id field, the name gRPC uses, as well', async () => {
      const first = await post({ num1: 6, num2: 7, request_id: 'snake-1' });
      assert.equal(first.status, 201);
      assert.deepEqual(await first.json(), { sum: '13', requestId: 'snake-1', replayed: false });
      const again = await post({ num1: 6, num2: 7, request_id: 'snake-1' });
      assert.equal(again.status, 200);
      assert.equal((await outboxFor('snake-1')).length, 1);
      const conflicting = await post({ num1: 6, num2: 7, request_id: 'snake-2', requestId: 'snake-3' });
      assert.equal(conflicting.status, 400);
    });

    it('answers 400 naming a field it does not know, rather than ignoring it', async () => {
      const response = await post({ num1: 1, num2: 2, requestid: 'misspelt-1' });
      assert.equal(response.status, 400);
      assert.match(((await response.json()) as any).error.message, /requestid/);
      assert.equal((await outboxFor('misspelt-1')).length, 0);
    });

    it('reads the Idempotency-Key header as UTF-8, so it is the same key as in the body', async () => {
      const key = 'café-☕-1';
      // Node sends each character of a header string as one byte: spell the key's UTF-8 bytes so.
      const utf8Header = Buffer.from(key, 'utf8').toString('latin1');
      const first = await post({ num1: 2, num2: 2, requestId: key }, { 'idempotency-key': utf8Header });
      assert.equal(first.status, 201, await first.clone().text());
      assert.equal(((await first.json()) as any).requestId, key);
      const again = await post({ num1: 2, num2: 2, requestId: key });
      assert.equal(again.status, 200);
      const invalid = await post({ num1: 2, num2: 2 }, { 'idempotency-key': '\xff\xfe' });
      assert.equal(invalid.status, 400);
    });

    it('answers 413 for an oversized body', async () => {
      const response = await post({ num1: 1, num2: 2, padding: 'x'.repeat(100_000) });
      assert.equal(response.status, 413);
    });

    it('serves /healthz, /readyz and /metrics', async () => {
      assert.equal((await fetch(`${http}/healthz`)).status, 200);
      assert.equal((await fetch(`${http}/readyz`)).status, 200);
      const metrics = await (await fetch(`${http}/metrics`)).text();
      assert.match(metrics, /summa_calculator_requests_total\{outcome="accepted",service="calculator"\} \d+/);
    });
  });
});

describe('calculator schema upgrade from a database with the notify trigger', () => {
  it('drops the trigger and its function when three instances start at once, and keeps the pending events', async () => {
    const database = await createTestDatabase('calculator_upgrade');
    const pools = Array.from({ length: 3 }, () => new pg.Pool({ connectionString: database.url, max: 2 }));
    const before = await mkdtemp(path.join(os.tmpdir(), 'summa-migrations-'));
    try {
      const files = (await readdir(CALCULATOR_MIGRATIONS)).filter((name) => Number.parseInt(name, 10) <= 2);
      for (const name of files) await cp(path.join(CALCULATOR_MIGRATIONS, name), path.join(before, name));
      await migrate(pools[0]!, CALCULATOR_SCHEMA, before);
      await pools[0]!.query(
        `INSERT INTO calculator.outbox (event_id, topic, message_key, payload) VALUES (gen_random_uuid(), 'sums', 'pending', '{}')`,
      );

      await Promise.all(pools.map((pool) => migrate(pool, CALCULATOR_SCHEMA, CALCULATOR_MIGRATIONS)));
      const [triggers, functions, applied, pending] = await Promise.all([
        pools[0]!.query(`SELECT tgname FROM pg_trigger WHERE tgrelid = 'calculator.outbox'::regclass AND NOT tgisinternal`),
        pools[0]!.query(`SELECT proname FROM pg_proc WHERE pronamespace = 'calculator'::regnamespace AND proname = 'notify_outbox'`),
        pools[0]!.query<{ version: number }>('SELECT version FROM calculator.schema_migrations ORDER BY version'),
        pools[0]!.query(`SELECT 1 FROM calculator.outbox WHERE message_key = 'pending'`),
      ]);
      assert.deepEqual(triggers.rows, []);
      assert.deepEqual(functions.rows, []);
      const every = (await readdir(CALCULATOR_MIGRATIONS)).filter((name) => name.endsWith('.sql')).map((name) => Number.parseInt(name, 10));
      assert.deepEqual(applied.rows.map((row) => row.version), every.sort((a, b) => a - b));
      assert.equal(pending.rowCount, 1);
    } finally {
      await rm(before, { recursive: true, force: true });
      await Promise.all(pools.map((pool) => pool.end()));
      await database.drop();
    }
  });
});
