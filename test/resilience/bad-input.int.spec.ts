import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { INT64_MAX, INT64_MIN } from '../../src/platform/int64.ts';
import { CalculatorClient, checkHealth } from '../../tools/lib/grpc-clients.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { createTestDatabase, uniqueName, type TestDatabase } from '../support/test-environment.ts';

const RUNS = 200;
const BODY_LIMIT = 16 * 1024;
const GRPC_MESSAGE_LIMIT = 64 * 1024;
const ADD_METHOD = '/summa.v1.CalculatorService/Add';

const int64 = fc.bigInt({ min: INT64_MIN, max: INT64_MAX });
const inRange = (value: bigint) => value >= INT64_MIN && value <= INT64_MAX;

/** What the calculator must make of a JSON value given as num1/num2: the integer, or a refusal. */
function expectedInteger(value: unknown): bigint | 'refused' {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : 'refused';
  if (typeof value === 'string' && /^[+-]?\d{1,30}$/.test(value.trim())) {
    const parsed = BigInt(value.trim());
    return inRange(parsed) ? parsed : 'refused';
  }
  return 'refused';
}

/** Any text: every code point, with lone surrogates, NUL and pairs made common rather than rare. */
const anyText = (maxLength: number) =>
  fc.oneof(
    fc.string({ unit: 'binary', maxLength }),
    fc
      .array(fc.oneof(fc.string({ unit: 'binary', maxLength: 4 }), fc.constantFrom('\ud800', '\udfff', '\udc00\ud800', '\u0000', '😀', 'é')), { maxLength: 12 })
      .map((parts) => parts.join('')),
  );

/** 1 to 128 characters of well-formed Unicode (no lone surrogate) without control characters. */
const isValidRequestId = (id: string) => id.length > 0 && id.length <= 128 && !/[\u0000-\u001f\u007f]/.test(id) && !/\p{Cs}/u.test(id);

/** num1/num2 candidates: valid ones of every shape, and everything a client might get wrong. */
const numberLike = fc.oneof(
  int64.map((n) => n.toString()),
  int64.map((n) => ` ${n} `),
  fc.maxSafeInteger(),
  fc.double(),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((n) => n.toString()),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((n) => n.toString()).map((s) => `${s}.0`),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom('', ' ', '1e3', '0x10', '+', '-', '١٢٣', 'NaN', 'Infinity', '9'.repeat(31), '--1', '1_000'),
  fc.jsonValue({ maxDepth: 2 }),
  fc.constant(undefined),
);

interface HttpAnswer {
  status: number;
  body: any;
  text: string;
}

describe('bad input against a real calculator process', () => {
  let database: TestDatabase;
  let calculator: ServiceProcess;
  let grpcAddress: string;
  let http: string;
  let client: CalculatorClient;
  let raw: grpc.Client;
  const runId = randomBytes(4).toString('hex');
  let sequence = 0;
  const nextId = () => `${runId}-${sequence++}`;

  before(async () => {
    database = await createTestDatabase('bad_input');
    const [grpcPort, httpPort] = await Promise.all([freePort(), freePort()]);
    grpcAddress = `127.0.0.1:${grpcPort}`;
    http = `http://127.0.0.1:${httpPort}`;
    calculator = new ServiceProcess(
      'calculator',
      {
        DATABASE_URL: database.url,
        KAFKA_TOPIC: uniqueName('bad-input'),
        CALCULATOR_GRPC_PORT: String(grpcPort),
        CALCULATOR_HTTP_PORT: String(httpPort),
      },
      `${http}/readyz`,
    );
    await calculator.start();
    client = new CalculatorClient(grpcAddress);
    raw = new grpc.Client(grpcAddress, grpc.credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    raw?.close();
    await calculator?.stop();
    await database?.drop();
  });

  async function post(body: string | Uint8Array, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<HttpAnswer> {
    const response = await fetch(`${http}/v1/sums`, { method: 'POST', headers, body: body as RequestInit['body'] });
    const text = await response.text();
    let parsed: any;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: response.status, body: parsed, text };
  }

  /** A refusal is a 4xx with our error format: a code and a message that says what is wrong. */
  function assertClientError(answer: HttpAnswer, codes: string[], context: unknown): void {
    const described = JSON.stringify(context, (_key, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value));
    const where = `${described?.slice(0, 200)} → ${answer.status} ${answer.text.slice(0, 200)}`;
    assert.ok(answer.status >= 400 && answer.status < 500, where);
    assert.ok(codes.includes(answer.body?.error?.code), where);
    assert.equal(typeof answer.body.error.message, 'string', where);
    assert.ok(answer.body.error.message.length > 0, where);
  }

  function grpcRaw(bytes: Buffer): Promise<{ code: grpc.status; details: string }> {
    return new Promise((resolve) => {
      raw.makeUnaryRequest(
        ADD_METHOD,
        (message: Buffer) => message,
        (message: Buffer) => message,
        bytes,
        { deadline: Date.now() + 10_000 },
        (error) => resolve(error ? { code: error.code, details: error.details } : { code: grpc.status.OK, details: '' }),
      );
    });
  }

  async function grpcAdd(num1: bigint, num2: bigint, requestId = '') {
    try {
      return { code: grpc.status.OK, response: await client.add({ num1, num2, requestId }), details: '' };
    } catch (error) {
      const failure = error as grpc.ServiceError;
      return { code: failure.code, response: undefined, details: failure.details };
    }
  }

  it('HTTP: any pair of int64 gets its exact sum, or OUT_OF_RANGE when the sum overflows', async () => {
    await fc.assert(
      fc.asyncProperty(int64, int64, fc.boolean(), async (num1, num2, asNumbers) => {
        const encode = (n: bigint) => (asNumbers && Number.isSafeInteger(Number(n)) ? Number(n) : n.toString());
        const answer = await post(JSON.stringify({ num1: encode(num1), num2: encode(num2), requestId: nextId() }));
        if (inRange(num1 + num2)) {
          assert.equal(answer.status, 201, answer.text);
          assert.equal(answer.body.sum, (num1 + num2).toString());
        } else {
          assertClientError(answer, ['OUT_OF_RANGE'], { num1, num2 });
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('HTTP: malformed, huge, fractional, missing or mistyped numbers are refused as INVALID_ARGUMENT or OUT_OF_RANGE', async () => {
    await fc.assert(
      fc.asyncProperty(numberLike, numberLike, async (num1, num2) => {
        const answer = await post(JSON.stringify({ num1, num2, requestId: nextId() }));
        const [a, b] = [expectedInteger(num1), expectedInteger(num2)];
        if (a !== 'refused' && b !== 'refused' && inRange(a + b)) {
          assert.equal(answer.status, 201, `${JSON.stringify({ num1, num2 })} → ${answer.text}`);
          assert.equal(answer.body.sum, (a + b).toString());
        } else {
          assertClientError(answer, ['INVALID_ARGUMENT', 'OUT_OF_RANGE'], { num1, num2 });
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('HTTP: arbitrary bodies under any content type get a 4xx with a message, never a 5xx', async () => {
    const contentTypes = [
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset=latin1',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
      'application/grpc',
      'none',
    ];
    const bodies = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.string({ unit: 'grapheme', maxLength: 100 }),
      fc.uint8Array({ maxLength: 300 }),
      fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value) ?? 'null'),
      fc.jsonValue({ maxDepth: 2 }).map((value) => (JSON.stringify({ num1: value, num2: 1 }) ?? '').slice(0, -1)),
      fc.constantFrom('', '{', '{"num1": 1, "num2": 2', '{"num1": 1,, "num2": 2}', '[1, 2]', 'null', '"5 + 10"', '{"__proto__": {"x": 1}}', '\u0000'),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...contentTypes), bodies, async (contentType, body) => {
        const headers: Record<string, string> = contentType === 'none' ? {} : { 'content-type': contentType };
        const answer = await post(typeof body === 'string' && contentType === 'none' ? Buffer.from(body) : body, headers);
        if (answer.status === 201) return; // a random body that happens to be a valid request
        assertClientError(answer, ['INVALID_ARGUMENT', 'OUT_OF_RANGE', 'UNSUPPORTED_MEDIA_TYPE', 'ALREADY_EXISTS'], { contentType, body });
      }),
      { numRuns: RUNS },
    );
  });

  it('HTTP: request ids of any text are kept exactly when valid and refused when too long, with control characters or lone surrogates', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyText(140), fc.string({ unit: 'grapheme', maxLength: 140 })), fc.boolean(), async (suffix, inHeader) => {
        const requestId = `${nextId()}:${suffix}`;
        const valid = isValidRequestId(requestId);
        // A header carries bytes: the key goes as its UTF-8 bytes, as a client library sends it.
        // Control characters cannot be sent in a header at all.
        const asHeader = inHeader && !/[\u0000-\u001f\u007f]/.test(requestId) && !/\p{Cs}/u.test(requestId);
        const answer = asHeader
          ? await post(JSON.stringify({ num1: 1, num2: 2 }), {
              'content-type': 'application/json',
              'idempotency-key': Buffer.from(requestId, 'utf8').toString('latin1'),
            })
          : await post(JSON.stringify({ num1: 1, num2: 2, requestId }));
        if (valid) {
          assert.equal(answer.status, 201, answer.text);
          // HTTP drops spaces and tabs around a header value.
          assert.equal(answer.body.requestId, asHeader ? requestId.replace(/[ \t]+$/, '') : requestId);
        } else {
          assertClientError(answer, ['INVALID_ARGUMENT'], { requestId });
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('HTTP: enforces the 16 KiB body limit and refuses oversized ids and headers', async () => {
    const padded = (size: number) => {
      // Padded with white space: the body takes no field beyond num1, num2 and the request id.
      const base = JSON.stringify({ num1: 1, num2: 2, requestId: nextId() });
      return `${base.slice(0, -1)}${' '.repeat(size - base.length)}}`;
    };
    assert.equal(Buffer.byteLength(padded(BODY_LIMIT)), BODY_LIMIT);
    assert.equal((await post(padded(BODY_LIMIT))).status, 201);
    assertClientError(await post(padded(BODY_LIMIT + 1)), ['PAYLOAD_TOO_LARGE'], 'limit + 1');
    const tooLarge = await post(padded(1024 * 1024));
    assert.equal(tooLarge.status, 413);
    assertClientError(await post(JSON.stringify({ num1: 1, num2: 2, requestId: 'i'.repeat(10_000) })), ['INVALID_ARGUMENT'], 'long id');
    assertClientError(
      await post(JSON.stringify({ num1: 1, num2: 2 }), { 'content-type': 'application/json', 'idempotency-key': 'k'.repeat(8_000) }),
      ['INVALID_ARGUMENT'],
      'long header id',
    );
    const hugeHeader = await fetch(`${http}/v1/sums`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-filler': 'f'.repeat(64 * 1024) },
      body: '{"num1":1,"num2":2}',
    });
    assert.equal(hugeHeader.status, 431);
  });

  it('gRPC: any pair of int64 gets its exact sum, or OUT_OF_RANGE when the sum overflows', async () => {
    await fc.assert(
      fc.asyncProperty(int64, int64, async (num1, num2) => {
        const answer = await grpcAdd(num1, num2, nextId());
        if (inRange(num1 + num2)) {
          assert.equal(answer.code, grpc.status.OK, answer.details);
          assert.equal(answer.response!.sum, (num1 + num2).toString());
        } else {
          assert.equal(answer.code, grpc.status.OUT_OF_RANGE);
          assert.ok(answer.details.length > 0);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('gRPC: request ids of any text are kept exactly when valid and refused as INVALID_ARGUMENT otherwise', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 140 }), anyText(140)), async (suffix) => {
        const requestId = `${nextId()}:${suffix}`;
        const answer = await grpcAdd(7n, -3n, requestId);
        if (/\p{Cs}/u.test(requestId)) {
          // A protobuf string is UTF-8 on the wire, where a lone surrogate has no form: the client's
          // encoder sends replacement bytes, so the server sees some other, well-formed id.
          if (answer.code === grpc.status.OK) assert.ok(!/\p{Cs}/u.test(answer.response!.request_id));
          else assert.equal(answer.code, grpc.status.INVALID_ARGUMENT, answer.details);
        } else if (isValidRequestId(requestId)) {
          assert.equal(answer.code, grpc.status.OK, answer.details);
          assert.equal(answer.response!.request_id, requestId);
          assert.equal(answer.response!.sum, '4');
        } else {
          assert.equal(answer.code, grpc.status.INVALID_ARGUMENT);
          assert.match(answer.details, /request id/);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('gRPC: arbitrary bytes as the request message are a client error, never INTERNAL', async () => {
    for (const bytes of [[0xff], [0x08], [0x0a, 0x05, 0x01], [0x0b], [0x0a]]) {
      const answer = await grpcRaw(Buffer.from(bytes));
      assert.equal(answer.code, grpc.status.INVALID_ARGUMENT, `${bytes}: ${answer.details}`);
      assert.match(answer.details, /not a valid AddRequest/);
    }
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (bytes) => {
        const answer = await grpcRaw(Buffer.from(bytes));
        const allowed = [grpc.status.OK, grpc.status.INVALID_ARGUMENT, grpc.status.OUT_OF_RANGE, grpc.status.ALREADY_EXISTS];
        assert.ok(allowed.includes(answer.code), `${Buffer.from(bytes).toString('hex')}: ${answer.code} ${answer.details}`);
      }),
      { numRuns: RUNS },
    );
  });

  it('gRPC: enforces the 64 KiB message limit', async () => {
    const belowLimit = await grpcAdd(1n, 2n, 'i'.repeat(GRPC_MESSAGE_LIMIT - 1_000));
    assert.equal(belowLimit.code, grpc.status.INVALID_ARGUMENT);
    const aboveLimit = await grpcAdd(1n, 2n, 'i'.repeat(GRPC_MESSAGE_LIMIT + 1_000));
    assert.equal(aboveLimit.code, grpc.status.RESOURCE_EXHAUSTED);
  });

  it('is still up and computing after all of it', async () => {
    assert.ok(calculator.running);
    assert.equal((await fetch(`${http}/healthz`)).status, 200);
    assert.equal(await checkHealth(grpcAddress, 'summa.v1.CalculatorService'), 'SERVING');
    assert.equal((await grpcAdd(5n, 10n)).response?.sum, '15');
    assert.doesNotMatch(calculator.logs, /"level":(50|60)/, 'nothing was logged as an error');
  });
});
