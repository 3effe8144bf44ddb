import type { ErrorCode, SummaError } from '../errors.ts';

const HTTP_STATUSES: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  OUT_OF_RANGE: 400,
  ALREADY_EXISTS: 422,
  NOT_FOUND: 404,
  UNAVAILABLE: 503,
  // As gRPC-to-HTTP gateways map DEADLINE_EXCEEDED; the JSON body's code tells it from a proxy's own 504.
  DEADLINE_EXCEEDED: 504,
  RESOURCE_EXHAUSTED: 429,
  UNAUTHENTICATED: 401,
  INTERNAL: 500,
};

/** The HTTP status a failure is answered with. */
export function httpStatusOf(error: SummaError): number {
  return HTTP_STATUSES[error.code];
}
