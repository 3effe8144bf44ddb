/**
 * The few ways a request can fail. Each transport answers a code with its own status:
 * src/platform/grpc/status.ts and src/platform/http/status.ts.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'OUT_OF_RANGE'
  | 'ALREADY_EXISTS'
  | 'NOT_FOUND'
  | 'UNAVAILABLE'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAUTHENTICATED'
  | 'INTERNAL';

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
}

export const invalidArgument = (message: string) => new SummaError('INVALID_ARGUMENT', message);

/** Anything that is not a SummaError becomes INTERNAL with a generic message; the original is the cause. */
export function toSummaError(error: unknown): SummaError {
  if (error instanceof SummaError) return error;
  return new SummaError('INTERNAL', 'internal error', { cause: error });
}
