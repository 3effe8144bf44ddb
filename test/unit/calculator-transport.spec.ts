import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { AddCommand, AddResult } from '../../src/calculator/add-command.ts';
import { startCalculatorGrpcServer, type CalculatorGrpcServer } from '../../src/calculator/grpc-server.ts';
import { registerCalculatorRoutes } from '../../src/calculator/http-routes.ts';
import { SummaError } from '../../src/platform/errors.ts';
import { createHttpServer } from '../../src/platform/http/server.ts';
import { CalculatorClient } from '../../tools/lib/grpc-clients.ts';

// The calculator's transports in process, over a scripted Add: what a caller is told when the
// outcome of its request is unknown.
describe('calculator transports when an outcome is unknown', () => {
  const logger = pino({ level: 'silent' });
  const seen: AddCommand[] = [];
  const unknown = async (command: AddCommand): Promise<AddResult> => {
    seen.push(command);
    throw new SummaError('UNAVAILABLE', `whether request ${JSON.stringify(command.requestId)} was recorded is unknown; retry with the same request id`, {
      requestId: command.requestId,
    });
  };
  let grpcServer: CalculatorGrpcServer;
  let client: CalculatorClient;
  const http = createHttpServer({ logger, registry: new Registry(), isReady: () => true });

  before(async () => {
    grpcServer = await startCalculatorGrpcServer({ host: '127.0.0.1', port: 0, add: unknown, logger });
    client = new CalculatorClient(`127.0.0.1:${grpcServer.port}`);
    registerCalculatorRoutes(http, unknown);
    await http.listen({ host: '127.0.0.1', port: 0 });
  });

  after(async () => {
    client?.close();
    await grpcServer?.shutdown(1_000);
    await http.close();
  });

  it('gRPC: UNAVAILABLE carries the request id in the summa-request-id-bin trailer, the assigned one too', async () => {
    for (const requestId of ['order-7', 'café-☕', undefined]) {
      const error = (await client.add({ num1: 1, num2: 2, requestId }).then(
        () => assert.fail('expected UNAVAILABLE'),
        (failure: grpc.ServiceError) => failure,
      )) as grpc.ServiceError;
      const expected = seen.at(-1)!.requestId;
      if (requestId !== undefined) assert.equal(expected, requestId);
      assert.equal(error.code, 14);
      const trailer = error.metadata.get('summa-request-id-bin')[0];
      assert.ok(Buffer.isBuffer(trailer), 'a binary trailer');
      assert.equal(trailer.toString('utf8'), expected);
    }
  });

  it('HTTP: 503 with the request id in the error body, the assigned one too', async () => {
    for (const requestId of ['order-8', undefined]) {
      const address = http.server.address() as { port: number };
      const response = await fetch(`http://127.0.0.1:${address.port}/v1/sums`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ num1: 1, num2: 2, ...(requestId ? { requestId } : {}) }),
      });
      assert.equal(response.status, 503);
      const body = (await response.json()) as { error: { code: string; message: string; requestId?: string } };
      assert.equal(body.error.code, 'UNAVAILABLE');
      assert.equal(body.error.requestId, seen.at(-1)!.requestId);
      if (requestId) assert.equal(body.error.requestId, requestId);
    }
  });
});
