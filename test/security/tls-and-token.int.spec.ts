import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CalculatorClient } from '../../tools/lib/grpc-clients.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';
import { createSelfSignedCertificate, httpsRequest, type SelfSignedCertificate } from '../support/tls.ts';
import { missingTool } from '../support/tools.ts';

const TOKEN = randomBytes(24).toString('base64url');

describe('TLS and the write token, with the services as real processes', { skip: missingTool('openssl') }, () => {
  let certificate: SelfSignedCertificate;
  let otherCertificate: SelfSignedCertificate;
  let database: TestDatabase;
  let calculator: ServiceProcess;
  let relay: ServiceProcess;
  let totals: ServiceProcess;
  let grpcAddress: string;
  let calculatorUrl: string;
  let relayUrl: string;
  let totalsUrl: string;

  before(async () => {
    certificate = createSelfSignedCertificate();
    otherCertificate = createSelfSignedCertificate();
    database = await createTestDatabase('security');
    const where = await serviceEnvironment({ name: 'security', databaseUrl: database.url, partitions: 2, scheme: 'https' });
    ({ grpcAddress, calculatorUrl, relayUrl, totalsUrl } = where);
    const env = {
      ...where.env,
      TLS_CERT_FILE: certificate.certFile,
      TLS_KEY_FILE: certificate.keyFile,
      SUMMA_WRITE_TOKEN: TOKEN,
      // Everything the services log, to check that no secret is among it.
      LOG_LEVEL: 'debug',
    };
    const readyOverTls = (url: string) => () =>
      httpsRequest(`${url}/readyz`, { ca: certificate.cert }).then((r) => r.status === 200, () => false);
    calculator = new ServiceProcess('calculator', env, `${calculatorUrl}/readyz`, readyOverTls(calculatorUrl));
    relay = new ServiceProcess('relay', env, `${relayUrl}/readyz`, readyOverTls(relayUrl));
    totals = new ServiceProcess('totals', env, `${totalsUrl}/readyz`, readyOverTls(totalsUrl));
    await calculator.start();
    await Promise.all([relay.start(), totals.start()]);
  });

  after(async () => {
    await Promise.all([calculator?.stop(), relay?.stop(), totals?.stop()]);
    await database?.drop();
    certificate?.remove();
    otherCertificate?.remove();
  });

  const grpcCode = async (client: CalculatorClient, call = { num1: 2n, num2: 3n }) => {
    try {
      await client.add(call, 5_000);
      return grpc.status.OK;
    } catch (error) {
      return (error as grpc.ServiceError).code;
    } finally {
      client.close();
    }
  };

  it('answers Add over gRPC with TLS to a client that trusts the CA and has the token', async () => {
    const client = new CalculatorClient(grpcAddress, { ca: certificate.cert, token: TOKEN });
    try {
      const response = await client.add({ num1: 40n, num2: 2n });
      assert.equal(response.sum, '42');
    } finally {
      client.close();
    }
  });

  it('refuses gRPC Add without the token, or with a wrong one, as UNAUTHENTICATED', async () => {
    const missing = new CalculatorClient(grpcAddress, { ca: certificate.cert });
    assert.equal(await grpcCode(missing), grpc.status.UNAUTHENTICATED);
    const wrong = new CalculatorClient(grpcAddress, { ca: certificate.cert, token: `${TOKEN}x` });
    assert.equal(await grpcCode(wrong), grpc.status.UNAUTHENTICATED);
    const truncated = new CalculatorClient(grpcAddress, { ca: certificate.cert, token: TOKEN.slice(0, -1) });
    assert.equal(await grpcCode(truncated), grpc.status.UNAUTHENTICATED);
  });

  it('has no gRPC conversation with a plaintext client or one that does not trust the certificate', async () => {
    assert.equal(await grpcCode(new CalculatorClient(grpcAddress, { token: TOKEN })), grpc.status.UNAVAILABLE);
    const untrusting = new CalculatorClient(grpcAddress, { ca: otherCertificate.cert, token: TOKEN });
    assert.equal(await grpcCode(untrusting), grpc.status.UNAVAILABLE);
  });

  it('serves POST /v1/sums over HTTPS only with the bearer token', async () => {
    const post = (headers: Record<string, string>) =>
      httpsRequest(`${calculatorUrl}/v1/sums`, {
        ca: certificate.cert,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ num1: 5, num2: 10, requestId: randomUUID() }),
      });
    const accepted = await post({ authorization: `Bearer ${TOKEN}` });
    assert.equal(accepted.status, 201, accepted.text);
    assert.equal(JSON.parse(accepted.text).sum, '15');

    for (const authorization of [undefined, `Bearer ${TOKEN}0`, `Basic ${TOKEN}`, 'Bearer', `Bearer  `]) {
      const refused = await post(authorization === undefined ? {} : { authorization });
      assert.equal(refused.status, 401, `${authorization}: ${refused.text}`);
      assert.equal(refused.headers['www-authenticate'], 'Bearer');
      const body = JSON.parse(refused.text) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'UNAUTHENTICATED');
      assert.match(body.error.message, /Bearer/);
    }
  });

  it('keeps reads, health, readiness and metrics open without a token, over HTTPS', async () => {
    for (const url of [calculatorUrl, relayUrl, totalsUrl]) {
      for (const pathname of ['/healthz', '/readyz', '/metrics']) {
        const response = await httpsRequest(`${url}${pathname}`, { ca: certificate.cert });
        assert.equal(response.status, 200, `${url}${pathname}`);
      }
    }
    const total = await httpsRequest(`${totalsUrl}/total`, { ca: certificate.cert });
    assert.equal(total.status, 200);
    assert.ok('total' in JSON.parse(total.text));
  });

  it('does not speak plain HTTP on the TLS ports, nor trust-less HTTPS', async () => {
    await assert.rejects(fetch(`${calculatorUrl.replace('https', 'http')}/healthz`));
    await assert.rejects(httpsRequest(`${totalsUrl}/healthz`, { ca: otherCertificate.cert }));
  });

  it('writes neither the token nor the database password into the logs', () => {
    const password = new URL(database.url).password;
    const logs = calculator.logs + relay.logs + totals.logs;
    assert.ok(logs.length > 0, 'the services logged something at debug level');
    assert.ok(!logs.includes(TOKEN.slice(0, 16)), 'the write token appears in a log');
    assert.ok(!logs.includes(database.url), 'DATABASE_URL appears in a log');
    assert.ok(!logs.includes(`:${password}@`), 'the database password appears in a log');
  });
});
