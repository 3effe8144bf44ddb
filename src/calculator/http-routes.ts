import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SummaError, invalidArgument } from '../platform/errors.ts';
import { bearerTokenMatches } from '../platform/security.ts';
import { inServerSpan } from '../platform/tracing/tracing.ts';
import { buildAddCommand, type AddCommand, type AddResult } from './add-command.ts';

export interface SumResponseBody {
  sum: string;
  requestId: string;
  replayed: boolean;
}

const ROUTE_ATTRIBUTES = { 'http.request.method': 'POST', 'http.route': '/v1/sums' };

/**
 * POST /v1/sums — the HTTP face of Add. The idempotency key is the Idempotency-Key header or a
 * requestId field; 201 when the sum is first accepted, 200 when a retry gets the original answer.
 */
export function registerCalculatorRoutes(
  app: FastifyInstance,
  add: (command: AddCommand) => Promise<AddResult>,
  options: { writeToken?: string } = {},
): void {
  const onRequest = options.writeToken === undefined ? [] : [requireBearerToken(options.writeToken)];
  app.post('/v1/sums', { onRequest }, async (request, reply) => {
    const body = request.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw invalidArgument('the body must be a JSON object like {"num1": 5, "num2": 10}');
    }
    const fields = body as Record<string, unknown>;
    const command = buildAddCommand({
      num1: fields.num1,
      num2: fields.num2,
      requestId: idempotencyKeyOf(request.raw.headersDistinct['idempotency-key'], fields.requestId),
    });
    // The server span of the call: the outbox write, and so the rest of the pipeline, hang off it.
    const result = await inServerSpan('POST /v1/sums', request.headers, ROUTE_ATTRIBUTES, () => add(command));
    const response: SumResponseBody = { sum: result.sum.toString(), requestId: result.requestId, replayed: result.replayed };
    return reply.status(result.replayed ? 200 : 201).send(response);
  });
}

/** `headers`: every Idempotency-Key header given (Node would join repeated ones with ", "). */
function idempotencyKeyOf(headers: string[] | undefined, field: unknown): unknown {
  if (headers !== undefined && headers.length > 1) throw invalidArgument('give the Idempotency-Key header once');
  const header = headers?.[0];
  if (header !== undefined && field !== undefined && header !== field) {
    throw invalidArgument('the Idempotency-Key header and the requestId field differ');
  }
  return header ?? field;
}

/** Refuses a request without the write token before its body is even read. */
function requireBearerToken(token: string) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (bearerTokenMatches(request.headers.authorization, token)) return;
    reply.header('www-authenticate', 'Bearer');
    throw new SummaError('UNAUTHENTICATED', 'this request needs an Authorization: Bearer <token> header with the write token');
  };
}
