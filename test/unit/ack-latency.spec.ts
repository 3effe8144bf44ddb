import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { createGrpcServerMetrics } from '../../src/platform/grpc/server-metrics.ts';
import { ackBuckets, ackWindow, scrapeAckLatency, type AckReadings } from '../../src/totals/console/ack-latency.ts';
import { latencyPercentiles, type BucketCounts } from '../../src/totals/console/latency-window.ts';

/** A calculator's exposition as prom-client writes it: Adds over gRPC and HTTP, and series that are not Adds. */
async function calculatorExposition(grpcSeconds: number[], httpSeconds: number[]): Promise<string> {
  const registry = new Registry();
  const grpc = createGrpcServerMetrics(registry);
  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'as the platform registers it',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  for (const seconds of grpcSeconds) grpc.handlingSeconds.observe({ grpc_type: 'unary', grpc_service: 'summa.v1.CalculatorService', grpc_method: 'Add' }, seconds);
  for (const seconds of httpSeconds) httpDuration.observe({ method: 'POST', route: '/v1/sums', status_code: '200' }, seconds);
  // Not Adds: a health check and a lookup.
  grpc.handlingSeconds.observe({ grpc_type: 'unary', grpc_service: 'grpc.health.v1.Health', grpc_method: 'Check' }, 4);
  httpDuration.observe({ method: 'GET', route: '/sums/:requestId', status_code: '200' }, 4);
  return registry.metrics();
}

const countUnder = (buckets: BucketCounts, bound: number) => buckets.find(([b]) => b === bound)?.[1];

describe('the calculators’ ack latency', () => {
  it('reads the Add series of gRPC and HTTP from an exposition, and nothing else', async () => {
    const buckets = ackBuckets(await calculatorExposition([0.002, 0.002, 0.02], [0.003, 0.2]));
    assert.equal(buckets.at(-1)?.[0], Infinity);
    assert.equal(buckets.at(-1)?.[1], 5, 'the health check and the lookup are not counted');
    assert.equal(countUnder(buckets, 0.0025), 2);
    assert.equal(countUnder(buckets, 0.005), 3);
    assert.equal(countUnder(buckets, 0.25), 5);
    assert.deepEqual(ackBuckets('# no histogram here\nup 1\n'), []);
  });

  it('sums every calculator’s Adds since its earliest reading in the window', async () => {
    const a0 = ackBuckets(await calculatorExposition([0.002], []));
    const b0 = ackBuckets(await calculatorExposition([], []));
    const a1 = ackBuckets(await calculatorExposition([0.002, 0.002, 0.002], []));
    const b1 = ackBuckets(await calculatorExposition([], [0.002, 0.7]));
    const earlier: AckReadings[] = [new Map([['a', a0], ['b', b0]])];
    const window = ackWindow(new Map([['a', a1], ['b', b1]]), earlier);
    assert.equal(window.at(-1)?.[1], 4, '2 new on a, 2 new on b');
    assert.deepEqual(latencyPercentiles(window, undefined), { events: 4, p50: 0.0025, p99: 1 });
  });

  it('counts a restarted calculator from zero, and a newly seen one from zero', async () => {
    const before = ackBuckets(await calculatorExposition([0.002, 0.002, 0.002, 0.002], []));
    const afterRestart = ackBuckets(await calculatorExposition([0.02], []));
    const fresh = ackBuckets(await calculatorExposition([0.02, 0.02], []));
    const window = ackWindow(new Map([['a', afterRestart], ['c', fresh]]), [new Map([['a', before]])]);
    assert.equal(window.at(-1)?.[1], 3, 'never a negative count');
    assert.equal(latencyPercentiles(window, undefined).p50, 0.025);
  });

  it('names the calculator whose /metrics cannot be read, and reads the others', async () => {
    const exposition = await calculatorExposition([0.002], []);
    const server = http.createServer((request, response) => {
      if (request.url === '/metrics') response.end(exposition);
      else response.writeHead(404).end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port: refusedPort } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    try {
      const good = `http://127.0.0.1:${port}/metrics`;
      const missing = `http://127.0.0.1:${port}/nothing`;
      const refused = `http://127.0.0.1:${refusedPort}/metrics`;
      const { readings, problems } = await scrapeAckLatency([good, missing, refused]);
      assert.deepEqual([...readings.keys()], [good]);
      assert.equal(problems.length, 2);
      assert.ok(problems.some((p) => p.includes(missing) && p.includes('404')), problems.join('; '));
      assert.ok(problems.some((p) => p.includes(`127.0.0.1:${refusedPort}`)), problems.join('; '));
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
