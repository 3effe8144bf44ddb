import { invalidArgument } from './errors.ts';

export const MAX_REQUEST_ID_LENGTH = 128;

const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;
/** With the u flag a surrogate pair reads as one code point, so only a lone surrogate is Cs. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * A client's idempotency key: 1 to 128 characters of well-formed Unicode, no control characters.
 * A lone UTF-16 surrogate (JSON allows "\ud800") has no UTF-8 form: PostgreSQL would store it as
 * U+FFFD, so the stored key would differ from the one the caller holds, and two keys differing only
 * there would become one.
 */
export function parseRequestId(value: unknown): string {
  if (typeof value !== 'string') throw invalidArgument('request id must be a string');
  if (value.length === 0) throw invalidArgument('request id must not be empty');
  if (value.length > MAX_REQUEST_ID_LENGTH) {
    throw invalidArgument(`request id must be at most ${MAX_REQUEST_ID_LENGTH} characters, got ${value.length}`);
  }
  if (CONTROL_CHARACTERS.test(value)) throw invalidArgument('request id must not contain control characters');
  if (LONE_SURROGATE.test(value)) throw invalidArgument('request id must be well-formed Unicode (it holds a lone surrogate)');
  return value;
}
