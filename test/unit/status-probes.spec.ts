import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import net from 'node:net';
import { collectStatus } from '../../src/cli/status-command.ts';
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

  it('answers within its timeouts when every component hangs, and calls each of them down', async () => {
    // Takes connections and never says a word: what a hung PostgreSQL, Kafka or service looks like from outside.
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    try {
      // Loading the clients is not what is timed (status loads them only once there is a run to ask).
      await Promise.all([import('../../src/cli/status-kafka.ts'), import('../../src/cli/status-postgres.ts')]);
      const started = Date.now();
      const report = await collectStatus(
        {
          topology: 'single',
          launcherPid: process.pid,
          startedAt: new Date().toISOString(),
          databaseUrl: `postgres://summa:summa@127.0.0.1:${port}/summa`,
          kafkaBrokers: `127.0.0.1:${port}`,
          consumerGroup: 'summa-totals',
          topic: 'summa.sums.v1',
          components: [
            { name: 'totals', role: 'totals', pid: process.pid, ports: [port], healthUrl: `http://127.0.0.1:${port}/readyz` },
            { name: 'kafka', role: 'kafka-broker', pid: process.pid, ports: [port], brokerId: 1 },
            { name: 'postgres-primary', role: 'postgres-primary', pid: process.pid, ports: [port] },
          ],
        },
        '/nowhere',
        { SUMMA_STATUS_TIMEOUT_MS: '300' },
      );
      const elapsed = Date.now() - started;
      // Kafka gets twice the timeout for the whole snapshot; the probes run side by side.
      assert.ok(elapsed < 2_000, `took ${elapsed} ms`);
      assert.equal(report.healthy, false);
      assert.deepEqual(
        report.components.map((c) => [c.name, c.healthy]),
        [['totals', false], ['kafka', false], ['postgres-primary', false]],
      );
      assert.match(report.components[0]!.detail, /no answer within 300 ms/);
      assert.match(report.components[1]!.detail, /cluster metadata unavailable/);
      assert.match(report.components[2]!.detail, /cannot query/);
    } finally {
      held.forEach((socket) => socket.destroy());
      silent.close();
    }
  });

  it('refuses a bad timeout, naming the variable', async () => {
    const state = { topology: 'single', launcherPid: process.pid, startedAt: '', databaseUrl: 'postgres://x@127.0.0.1:1/x', kafkaBrokers: '127.0.0.1:1', consumerGroup: 'g', topic: 't', components: [] } as const;
    await assert.rejects(collectStatus({ ...state, components: [] }, '/nowhere', { SUMMA_STATUS_TIMEOUT_MS: 'soon' }), /SUMMA_STATUS_TIMEOUT_MS/);
  });
});
