import { status as GrpcStatus } from '@grpc/grpc-js';

/** The few ways a request can fail, each with one gRPC status and one HTTP status. */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'OUT_OF_RANGE'
  | 'ALREADY_EXISTS'
  | 'NOT_FOUND'
  | 'UNAVAILABLE'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAUTHENTICATED'
  | 'INTERNAL';

const statuses: Record<ErrorCode, { grpc: GrpcStatus; http: number }> = {
  INVALID_ARGUMENT: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400 },
  OUT_OF_RANGE: { grpc: GrpcStatus.OUT_OF_RANGE, http: 400 },
  ALREADY_EXISTS: { grpc: GrpcStatus.ALREADY_EXISTS, http: 422 },
  NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404 },
  UNAVAILABLE: { grpc: GrpcStatus.UNAVAILABLE, http: 503 },
  RESOURCE_EXHAUSTED: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 429 },
  UNAUTHENTICATED: { grpc: GrpcStatus.UNAUTHENTICATED, http: 401 },
  INTERNAL: { grpc: GrpcStatus.INTERNAL, http: 500 },
};

/**
 * An error whose message is safe to show to the caller. The `cause` is for logs only and is never
 * sent over the wire.
 */
export class SummaError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SummaError';
    this.code = code;
  }

  get grpcStatus(): GrpcStatus {
    return statuses[this.code].grpc;
  }

  get httpStatus(): number {
    return statuses[this.code].http;
  }
}

export const invalidArgument = (message: string) => new SummaError('INVALID_ARGUMENT', message);

/** Anything that is not a SummaError becomes INTERNAL with a generic message; the original is the cause. */
export function toSummaError(error: unknown): SummaError {
  if (error instanceof SummaError) return error;
  return new SummaError('INTERNAL', 'internal error', { cause: error });
}
