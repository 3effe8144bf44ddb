import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BenchProcess } from '../../tools/bench/bench-process.ts';
import { runGhz } from '../../tools/bench/ghz-load.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { missingTool, requireTool } from '../support/tools.ts';

// The benchmark's load generator against its ceiling, the bare gRPC echo server (R1): ghz reads
// Summa's proto, and its report is read into the figures the benchmark records.
describe('ghz load against the echo server', { timeout: 120_000, skip: missingTool('ghz') }, () => {
  let echo: BenchProcess;
  let target: string;

  before(async () => {
    const port = await freePort();
    echo = new BenchProcess({
      name: 'echo',
      entry: 'tools/bench/echo-server.ts',
      env: { ECHO_PORT: String(port) },
      isReady: async (output) => output.includes('listening'),
    });
    await echo.start();
    target = `127.0.0.1:${port}`;
  });

  after(() => echo?.stop());

  it('makes exactly the calls a fill asks for, every one acknowledged', async () => {
    const result = await runGhz(requireTool('ghz'), target, { mode: 'fill', connections: 4, concurrency: 20, requests: 500 });
    assert.deepEqual(result.statusCodes, { OK: 500 });
    assert.equal(result.acked, 500);
    assert.equal(result.failed, 0);
    assert.ok(result.p50Ms > 0 && result.p50Ms <= result.p99Ms, `p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms`);
    assert.ok(result.generatorCpuSeconds > 0, 'ghz used no CPU: its CPU time was not measured');
  });

  it('counts every call of a timed closed loop, in flight at the end or not', async () => {
    const result = await runGhz(requireTool('ghz'), target, { mode: 'closed', connections: 2, concurrency: 10, durationSeconds: 1 });
    assert.ok(result.acked > 0);
    assert.equal(result.acked, result.requests, JSON.stringify(result.errors));
    // ghz's own clock for the run, which may end a few milliseconds short of the second asked.
    assert.ok(result.wallSeconds >= 0.95, `ran ${result.wallSeconds} s of 1`);
  });

  it('holds an open loop rate', async () => {
    const result = await runGhz(requireTool('ghz'), target, { mode: 'open', rate: 100, durationSeconds: 2, connections: 2 });
    // Paced, not a flood: 100/s for as long as ghz ran, which on a busy machine is a little over the
    // 2 s asked (a few more: the pacer's first tick comes at once, and the calls due at the end still go).
    const due = 100 * result.wallSeconds;
    assert.ok(result.requests >= 0.95 * due && result.requests <= due + 8, `${result.requests} calls for 100/s over ${result.wallSeconds} s`);
    assert.equal(result.acked, result.requests);
  });
});
