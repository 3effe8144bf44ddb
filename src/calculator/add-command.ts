import { randomUUID } from 'node:crypto';
import { SummaError } from '../platform/errors.ts';
import { isInt64, parseInt64 } from '../platform/int64.ts';
import { parseRequestId } from '../platform/request-id.ts';

/** A validated Add request: the numbers, their sum, and the idempotency key it is recorded under. */
export interface AddCommand {
  readonly num1: bigint;
  readonly num2: bigint;
  readonly sum: bigint;
  readonly requestId: string;
}

export interface AddInput {
  num1: unknown;
  num2: unknown;
  /** undefined when the caller gave none: the server assigns one. */
  requestId?: unknown;
}

export function buildAddCommand(input: AddInput, newRequestId: () => string = randomUUID): AddCommand {
  const num1 = parseInt64(input.num1, 'num1');
  const num2 = parseInt64(input.num2, 'num2');
  const sum = num1 + num2;
  if (!isInt64(sum)) {
    throw new SummaError('OUT_OF_RANGE', `num1 + num2 = ${sum} overflows the signed 64-bit range`);
  }
  const requestId = input.requestId === undefined ? newRequestId() : parseRequestId(input.requestId);
  return { num1, num2, sum, requestId };
}

export interface AddResult {
  readonly requestId: string;
  readonly sum: bigint;
  readonly replayed: boolean;
}

export interface RecordedRequest {
  readonly num1: bigint;
  readonly num2: bigint;
  readonly sum: bigint;
}

/**
 * The idempotency decision for a request id that was already recorded: the same numbers get the
 * original answer; other numbers under the same id are a client error, never a second event.
 */
export function replayOf(command: AddCommand, recorded: RecordedRequest): AddResult {
  if (recorded.num1 !== command.num1 || recorded.num2 !== command.num2) {
    throw new SummaError(
      'ALREADY_EXISTS',
      // Not which numbers: the first request's content is its sender's, not this caller's.
      `request id ${JSON.stringify(command.requestId)} was already used with other numbers; use a new id for a new sum`,
    );
  }
  return { requestId: command.requestId, sum: recorded.sum, replayed: true };
}
