import { invalidArgument } from './errors.ts';

export const MAX_REQUEST_ID_LENGTH = 128;

const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/** A client's idempotency key: 1 to 128 characters, no control characters. */
export function parseRequestId(value: unknown): string {
  if (typeof value !== 'string') throw invalidArgument('request id must be a string');
  if (value.length === 0) throw invalidArgument('request id must not be empty');
  if (value.length > MAX_REQUEST_ID_LENGTH) {
    throw invalidArgument(`request id must be at most ${MAX_REQUEST_ID_LENGTH} characters, got ${value.length}`);
  }
  if (CONTROL_CHARACTERS.test(value)) throw invalidArgument('request id must not contain control characters');
  return value;
}
