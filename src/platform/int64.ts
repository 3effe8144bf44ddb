import { SummaError } from './errors.ts';

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

const DECIMAL_INTEGER = /^[+-]?\d{1,30}$/;

/**
 * Reads a signed 64-bit integer given as a JSON number or a decimal string.
 * JSON numbers beyond 2^53 have already lost precision when parsed, so they are refused with a
 * hint to send a string instead of being silently rounded.
 */
export function parseInt64(value: unknown, field: string): bigint {
  if (value === undefined || value === null) {
    throw new SummaError('INVALID_ARGUMENT', `${field} is required`);
  }
  let parsed: bigint;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) {
      throw new SummaError('INVALID_ARGUMENT', `${field} must be an integer, got ${value}`);
    }
    if (!Number.isSafeInteger(value)) {
      throw new SummaError(
        'INVALID_ARGUMENT',
        `${field} is beyond the exact range of JSON numbers (±2^53); send it as a decimal string`,
      );
    }
    parsed = BigInt(value);
  } else if (typeof value === 'string') {
    const text = value.trim();
    if (!DECIMAL_INTEGER.test(text)) {
      throw new SummaError('INVALID_ARGUMENT', `${field} must be a decimal integer, got ${JSON.stringify(truncate(value))}`);
    }
    parsed = BigInt(text);
  } else {
    throw new SummaError('INVALID_ARGUMENT', `${field} must be an integer (number or decimal string), got ${typeof value}`);
  }
  if (parsed < INT64_MIN || parsed > INT64_MAX) {
    throw new SummaError('OUT_OF_RANGE', `${field} is outside the signed 64-bit range [${INT64_MIN}, ${INT64_MAX}]`);
  }
  return parsed;
}

export function isInt64(value: bigint): boolean {
  return value >= INT64_MIN && value <= INT64_MAX;
}

function truncate(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
