import { isInt64 } from '../platform/int64.ts';

/**
 * The one event of the system: a sum was accepted. It is published with the request id as the
 * Kafka key and JSON as the value; int64 values travel as decimal strings so that no reader can
 * round them.
 */
export const SUM_ACCEPTED_TYPE = 'summa.sum.accepted';
export const SUM_ACCEPTED_VERSION = 1;

export interface SumAccepted {
  eventId: string;
  requestId: string;
  num1: bigint;
  num2: bigint;
  sum: bigint;
  acceptedAt: Date;
}

export interface SumAcceptedJson {
  type: typeof SUM_ACCEPTED_TYPE;
  version: typeof SUM_ACCEPTED_VERSION;
  eventId: string;
  requestId: string;
  num1: string;
  num2: string;
  sum: string;
  acceptedAt: string;
}

/** An event as its JSON value carries it (int64 values as decimal strings), before serialising. */
export function sumAcceptedJson(event: SumAccepted): SumAcceptedJson {
  return {
    type: SUM_ACCEPTED_TYPE,
    version: SUM_ACCEPTED_VERSION,
    eventId: event.eventId,
    requestId: event.requestId,
    num1: event.num1.toString(),
    num2: event.num2.toString(),
    sum: event.sum.toString(),
    acceptedAt: event.acceptedAt.toISOString(),
  };
}

export function encodeSumAccepted(event: SumAccepted): string {
  return JSON.stringify(sumAcceptedJson(event));
}

/** A record that can never be a valid event: nothing any release could read in it. */
export class MalformedEventError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'MalformedEventError';
  }
}

/**
 * A sum-accepted event in a version newer than this release reads: a valid sum that a newer
 * calculator wrote (during a rolling upgrade, say). It must wait for a newer reader, never be
 * dropped.
 */
export class NewerEventVersionError extends Error {
  constructor(readonly version: number) {
    super(`event version ${version} is newer than this release reads (${SUM_ACCEPTED_VERSION})`);
    this.name = 'NewerEventVersionError';
  }
}

/**
 * The longest request id, in UTF-8 bytes, that the index on totals.applied_events (request_id)
 * always takes: a B-tree entry holds at most 2704 bytes. The calculator's own limit (128
 * characters) is far below.
 */
export const MAX_REQUEST_ID_BYTES = 2000;

/** PostgreSQL's first timestamp, 4714-11-24 00:00 BC (UTC); its last is beyond JavaScript's. */
const EARLIEST_POSTGRES_TIMESTAMP_MS = Date.UTC(-4713, 10, 24);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DECIMAL = /^-?\d{1,19}$/;

/**
 * Reads a version-1 event. A sum-accepted event of a newer version throws NewerEventVersionError;
 * anything else that is not a well-formed version-1 event, including values PostgreSQL would refuse
 * to store, throws MalformedEventError.
 */
export function decodeSumAccepted(value: Buffer | string): SumAccepted {
  let json: unknown;
  try {
    json = JSON.parse(typeof value === 'string' ? value : value.toString('utf8'));
  } catch {
    throw new MalformedEventError('value is not JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new MalformedEventError('value is not a JSON object');
  }
  const record = json as Record<string, unknown>;
  if (record.type !== SUM_ACCEPTED_TYPE) {
    throw new MalformedEventError(`unknown event type ${JSON.stringify(record.type)}`);
  }
  const version = record.version;
  if (typeof version === 'number' && Number.isSafeInteger(version) && version > SUM_ACCEPTED_VERSION) {
    throw new NewerEventVersionError(version);
  }
  if (version !== SUM_ACCEPTED_VERSION) {
    throw new MalformedEventError(`unsupported event version ${JSON.stringify(version)}`);
  }
  const eventId = requireString(record, 'eventId');
  if (!UUID.test(eventId)) throw new MalformedEventError('eventId is not a UUID');
  const requestId = requireText(record, 'requestId');
  if (Buffer.byteLength(requestId) > MAX_REQUEST_ID_BYTES) {
    throw new MalformedEventError(`requestId is longer than ${MAX_REQUEST_ID_BYTES} bytes`);
  }
  const num1 = requireInt64(record, 'num1');
  const num2 = requireInt64(record, 'num2');
  const sum = requireInt64(record, 'sum');
  if (num1 + num2 !== sum) throw new MalformedEventError('sum does not equal num1 + num2');
  const acceptedAt = new Date(requireString(record, 'acceptedAt'));
  if (Number.isNaN(acceptedAt.getTime())) throw new MalformedEventError('acceptedAt is not a timestamp');
  if (acceptedAt.getTime() < EARLIEST_POSTGRES_TIMESTAMP_MS) {
    throw new MalformedEventError('acceptedAt is before 4714-11-24 BC, the first timestamp PostgreSQL stores');
  }
  return { eventId: eventId.toLowerCase(), requestId, num1, num2, sum, acceptedAt };
}

function requireString(record: Record<string, unknown>, field: string): string {
  const value = record[field];
  if (typeof value !== 'string' || value.length === 0) throw new MalformedEventError(`${field} is missing`);
  return value;
}

/** A string PostgreSQL's text type takes: it has no NUL character. */
function requireText(record: Record<string, unknown>, field: string): string {
  const value = requireString(record, field);
  if (value.includes('\u0000')) throw new MalformedEventError(`${field} contains a NUL character`);
  return value;
}

function requireInt64(record: Record<string, unknown>, field: string): bigint {
  const value = requireString(record, field);
  if (!DECIMAL.test(value)) throw new MalformedEventError(`${field} is not a decimal integer`);
  const parsed = BigInt(value);
  if (!isInt64(parsed)) throw new MalformedEventError(`${field} is outside the 64-bit range`);
  return parsed;
}
