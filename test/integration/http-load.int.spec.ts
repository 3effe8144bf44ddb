import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../../tools/lib/free-port.ts';
import { BenchProcess } from '../../tools/bench/bench-process.ts';
import { runHttpLoad } from '../../tools/bench/http-load.ts';
import { missingTool, requireTool } from '../support/tools.ts';

// The benchmark's HTTP generator against its HTTP ceiling (the bare Fastify echo server): the
// pinned vegeta runs, its report is read, and every answer of the echo server is acknowledged.
describe('the HTTP load generator of the benchmark', { timeout: 60_000, skip: missingTool('vegeta') }, () => {
  let echo: BenchProcess;
  let url: string;

  before(async () => {
    const port = await freePort();
    echo = new BenchProcess({
      name: 'http-echo',
      entry: 'tools/bench/http-echo-server.ts',
      env: { ECHO_PORT: String(port) },
      isReady: async (output) => output.includes('listening'),
    });
    await echo.start();
    url = `http://127.0.0.1:${port}/v1/sums`;
  });

  after(() => echo?.stop());

  it('answers POST /v1/sums as the calculator does', async () => {
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"num1": 5, "num2": 10}' });
    assert.equal(response.status, 201);
    const body = (await response.json()) as { sum: string; requestId: string; replayed: boolean };
    assert.equal(body.sum, '15');
    assert.equal(body.replayed, false);
    assert.match(body.requestId, /^[0-9a-f-]{36}$/);
  });

  it('runs a closed loop and counts every 2xx answer as acknowledged', async () => {
    const result = await runHttpLoad(requireTool('vegeta'), { url, body: '{"num1": 5, "num2": 10}', workers: 2, durationSeconds: 1 });
    assert.ok(result.acked > 10, `only ${result.acked} requests were acknowledged: ${JSON.stringify(result)}`);
    assert.equal(result.errors, 0, JSON.stringify(result));
    assert.equal(result.acked, result.requests);
    assert.deepEqual(Object.keys(result.statusCodes), ['201']);
    assert.ok(result.p99Ms >= result.p50Ms && result.p50Ms > 0, JSON.stringify(result));
    assert.ok(Number.isFinite(result.generatorCpuMsPerRequest) && result.generatorCpuMsPerRequest >= 0, JSON.stringify(result));
  });
});
