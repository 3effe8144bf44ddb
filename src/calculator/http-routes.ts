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
    const fields = addBodyOf(body as Record<string, unknown>);
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

const BODY_FIELDS = new Set(['num1', 'num2', 'requestId', 'request_id']);

/**
 * The fields of an Add body. A field it does not know is refused rather than ignored: a misspelt
 * key (`requestid`, `idempotency_key`) would otherwise give every retry a new id, and count it
 * again. `request_id`, the field's name in the gRPC contract, is taken as well as `requestId`.
 */
function addBodyOf(fields: Record<string, unknown>): { num1: unknown; num2: unknown; requestId: unknown } {
  const unknown = Object.keys(fields).find((name) => !BODY_FIELDS.has(name));
  if (unknown !== undefined) {
    throw invalidArgument(`unknown field ${JSON.stringify(unknown)}; the body takes num1, num2 and requestId (or request_id)`);
  }
  const { requestId, request_id: snakeCase } = fields;
  if (requestId !== undefined && snakeCase !== undefined && requestId !== snakeCase) {
    throw invalidArgument('the requestId and request_id fields differ');
  }
  return { num1: fields.num1, num2: fields.num2, requestId: requestId ?? snakeCase };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * `headers`: every Idempotency-Key header given (Node would join repeated ones with ", "). Node
 * reads header bytes as Latin-1; the key is read as UTF-8, as the body is, so that one key sent
 * in the header and in the body is the same key.
 */
function idempotencyKeyOf(headers: string[] | undefined, field: unknown): unknown {
  if (headers !== undefined && headers.length > 1) throw invalidArgument('give the Idempotency-Key header once');
  const header = headers?.[0] === undefined ? undefined : decodeUtf8Header(headers[0]);
  if (header !== undefined && field !== undefined && header !== field) {
    throw invalidArgument('the Idempotency-Key header and the requestId field differ');
  }
  return header ?? field;
}

function decodeUtf8Header(latin1: string): string {
  try {
    return utf8.decode(Buffer.from(latin1, 'latin1'));
  } catch {
    throw invalidArgument('the Idempotency-Key header must be UTF-8');
  }
}

/** Refuses a request without the write token before its body is even read. */
function requireBearerToken(token: string) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (bearerTokenMatches(request.headers.authorization, token)) return;
    reply.header('www-authenticate', 'Bearer');
    throw new SummaError('UNAUTHENTICATED', 'this request needs an Authorization: Bearer <token> header with the write token');
  };
}
