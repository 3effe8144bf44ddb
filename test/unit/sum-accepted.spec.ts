import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeSumAccepted,
  encodeSumAccepted,
  MalformedEventError,
  NewerEventVersionError,
  SUM_ACCEPTED_VERSION,
  MAX_REQUEST_ID_BYTES,
  type SumAccepted,
} from '../../src/events/sum-accepted.ts';

const event: SumAccepted = {
  eventId: '0b6b6c3e-52c5-4c8e-9a5e-6f4a1f2d3c4b',
  requestId: 'req-1',
  num1: 4611686018427387904n,
  num2: -4611686018427387905n,
  sum: -1n,
  acceptedAt: new Date('2026-01-02T03:04:05.678Z'),
};

describe('sum-accepted event encoding', () => {
  it('round-trips every field exactly, int64 values as decimal strings', () => {
    const encoded = encodeSumAccepted(event);
    assert.match(encoded, /"num1":"4611686018427387904"/);
    assert.deepEqual(decodeSumAccepted(Buffer.from(encoded)), event);
  });

  const valid = JSON.parse(encodeSumAccepted(event)) as Record<string, unknown>;
  for (const [label, value] of [
    ['not JSON', '{nope'],
    ['a JSON array', '[1,2]'],
    ['of an unknown type', JSON.stringify({ ...valid, type: 'other' })],
    ['without a version', JSON.stringify({ ...valid, version: undefined })],
    ['with version 0', JSON.stringify({ ...valid, version: 0 })],
    ['with a negative version', JSON.stringify({ ...valid, version: -1 })],
    ['with a fractional version', JSON.stringify({ ...valid, version: 1.5 })],
    ['with the version as a string', JSON.stringify({ ...valid, version: '2' })],
    ['without an event id', JSON.stringify({ ...valid, eventId: undefined })],
    ['with a bad event id', JSON.stringify({ ...valid, eventId: 'abc' })],
    ['with a numeric sum', JSON.stringify({ ...valid, sum: -1 })],
    ['with a sum that does not add up', JSON.stringify({ ...valid, sum: '7' })],
    ['with an out-of-range number', JSON.stringify({ ...valid, num1: '9223372036854775808' })],
    ['with a bad timestamp', JSON.stringify({ ...valid, acceptedAt: 'yesterday' })],
    // What PostgreSQL refuses is refused here, so that it can never stall the consumer.
    ['with a NUL in the request id', JSON.stringify({ ...valid, requestId: 'a\u0000b' })],
    ['with a request id too long for its index', JSON.stringify({ ...valid, requestId: 'x'.repeat(MAX_REQUEST_ID_BYTES + 1) })],
    ['with a request id whose UTF-8 is too long for its index', JSON.stringify({ ...valid, requestId: 'ü'.repeat(MAX_REQUEST_ID_BYTES / 2 + 1) })],
    ['accepted before PostgreSQL\'s first timestamp (4714-11-24 BC)', JSON.stringify({ ...valid, acceptedAt: '-004713-11-23T23:59:59.999Z' })],
  ]) {
    it(`refuses a record ${label}`, () => {
      assert.throws(() => decodeSumAccepted(Buffer.from(value as string)), MalformedEventError);
    });
  }

  it('accepts the edges of what PostgreSQL stores: its first timestamp, JavaScript\'s last, the longest request id', () => {
    for (const acceptedAt of ['-004713-11-24T00:00:00.000Z', '+275760-09-13T00:00:00.000Z']) {
      const decoded = decodeSumAccepted(JSON.stringify({ ...valid, acceptedAt }));
      assert.equal(decoded.acceptedAt.toISOString(), acceptedAt);
    }
    const longest = 'ü'.repeat(MAX_REQUEST_ID_BYTES / 2);
    assert.equal(decodeSumAccepted(JSON.stringify({ ...valid, requestId: longest })).requestId, longest);
  });

  it('tells a known event in a newer version apart from a malformed record: it is not refused, a newer release reads it', () => {
    for (const version of [SUM_ACCEPTED_VERSION + 1, 99]) {
      // Whatever the fields of that version look like: this release cannot judge them.
      const newer = JSON.stringify({ type: valid.type, version, amount: { value: '3' } });
      assert.throws(
        () => decodeSumAccepted(newer),
        (error: unknown) => error instanceof NewerEventVersionError && !(error instanceof MalformedEventError) && error.version === version,
      );
    }
  });
});
