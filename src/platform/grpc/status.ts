import { status } from '@grpc/grpc-js';
import type { ErrorCode, SummaError } from '../errors.ts';

const GRPC_STATUSES: Record<ErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  OUT_OF_RANGE: status.OUT_OF_RANGE,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  NOT_FOUND: status.NOT_FOUND,
  UNAVAILABLE: status.UNAVAILABLE,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  INTERNAL: status.INTERNAL,
};

/** The gRPC status a failure is answered with. */
export function grpcStatusOf(error: SummaError): status {
  return GRPC_STATUSES[error.code];
}
