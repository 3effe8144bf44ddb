import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { pidAlive, readiness } from '../../src/cli/status-probes.ts';
import { createSelfSignedCertificate } from '../support/tls.ts';
import { missingTool } from '../support/tools.ts';

/** A server standing for a service's /readyz, on a free port; closed by the returned function. */
async function listen(server: http.Server): Promise<{ port: number; close: () => Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('summa status probes', () => {
  it('tells a live pid from a gone one', () => {
    assert.equal(pidAlive(process.pid), true);
    assert.equal(pidAlive(2 ** 22 + 1), false);
    assert.equal(pidAlive(null), null);
  });

  it("reads a readiness refusal's status and reason, and names a refused connection and a hung server", async () => {
    const handler: http.RequestListener = (request, response) => {
      if (request.url === '/hang') return;
      response.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'not ready', reason: 'partition 1 stalled' }));
    };
    const server = await listen(http.createServer(handler));
    try {
      assert.deepEqual(await readiness(`http://127.0.0.1:${server.port}/readyz`), { status: 503, reason: 'partition 1 stalled' });
      const started = Date.now();
      assert.deepEqual(await readiness(`http://127.0.0.1:${server.port}/hang`, { timeoutMs: 300 }), { reason: 'no answer within 300 ms' });
      assert.ok(Date.now() - started < 2_000);
    } finally {
      await server.close();
    }
    assert.deepEqual(await readiness(`http://127.0.0.1:${server.port}/readyz`), { reason: 'connection refused' });
  });

  it('asks an HTTPS service with the CA it is given', { skip: missingTool('openssl') }, async () => {
    const certificate = createSelfSignedCertificate();
    const server = await listen(
      https.createServer({ cert: certificate.cert, key: readFileSync(certificate.keyFile) }, (_request, response) =>
        response.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}'),
      ),
    );
    try {
      const url = `https://127.0.0.1:${server.port}/readyz`;
      assert.deepEqual(await readiness(url, { ca: certificate.cert }), { status: 200 });
      const untrusted = await readiness(url);
      assert.equal(untrusted.status, undefined);
      assert.match(untrusted.reason!, /self[- ]signed/);
    } finally {
      await server.close();
      certificate.remove();
    }
  });
});
