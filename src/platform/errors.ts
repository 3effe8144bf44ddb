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
  /** A wait the caller asked for (GET /total?after=) ran out before what it waited for happened. */
  | 'DEADLINE_EXCEEDED'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAUTHENTICATED'
  | 'INTERNAL';

/**
 * An error whose message is safe to show to the caller. The `cause` is for logs only and is never
 * sent over the wire.
 */
export class SummaError extends Error {
  readonly code: ErrorCode;
  /**
   * The request id this failure is about, when the request got that far. Sent to the caller (a
   * gRPC trailer, the HTTP error body), so that one whose id the server assigned can still retry
   * under it when the outcome is unknown, instead of being counted again under a new id.
   */
  readonly requestId: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; requestId?: string }) {
    super(message, options);
    this.name = 'SummaError';
    this.code = code;
    this.requestId = options?.requestId;
  }
}

export const invalidArgument = (message: string) => new SummaError('INVALID_ARGUMENT', message);

/** Anything that is not a SummaError becomes INTERNAL with a generic message; the original is the cause. */
export function toSummaError(error: unknown): SummaError {
  if (error instanceof SummaError) return error;
  return new SummaError('INTERNAL', 'internal error', { cause: error });
}
