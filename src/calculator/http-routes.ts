import type { FastifyInstance } from 'fastify';
import { invalidArgument } from '../platform/errors.ts';
import { buildAddCommand, type AddCommand, type AddResult } from './add-command.ts';

export interface SumResponseBody {
  sum: string;
  requestId: string;
  replayed: boolean;
}

/**
 * POST /v1/sums — the HTTP face of Add. The idempotency key is the Idempotency-Key header or a
 * requestId field; 201 when the sum is first accepted, 200 when a retry gets the original answer.
 */
export function registerCalculatorRoutes(app: FastifyInstance, add: (command: AddCommand) => Promise<AddResult>): void {
  app.post('/v1/sums', async (request, reply) => {
    const body = request.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw invalidArgument('the body must be a JSON object like {"num1": 5, "num2": 10}');
    }
    const fields = body as Record<string, unknown>;
    const command = buildAddCommand({
      num1: fields.num1,
      num2: fields.num2,
      requestId: idempotencyKeyOf(request.headers['idempotency-key'], fields.requestId),
    });
    const result = await add(command);
    const response: SumResponseBody = { sum: result.sum.toString(), requestId: result.requestId, replayed: result.replayed };
    return reply.status(result.replayed ? 200 : 201).send(response);
  });
}

function idempotencyKeyOf(header: string | string[] | undefined, field: unknown): unknown {
  if (Array.isArray(header)) throw invalidArgument('give the Idempotency-Key header once');
  if (header !== undefined && field !== undefined && header !== field) {
    throw invalidArgument('the Idempotency-Key header and the requestId field differ');
  }
  return header ?? field;
}
