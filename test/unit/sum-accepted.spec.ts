import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeSumAccepted, encodeSumAccepted, MalformedEventError, type SumAccepted } from '../../src/events/sum-accepted.ts';

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
    ['of an unknown version', JSON.stringify({ ...valid, version: 2 })],
    ['without an event id', JSON.stringify({ ...valid, eventId: undefined })],
    ['with a bad event id', JSON.stringify({ ...valid, eventId: 'abc' })],
    ['with a numeric sum', JSON.stringify({ ...valid, sum: -1 })],
    ['with a sum that does not add up', JSON.stringify({ ...valid, sum: '7' })],
    ['with an out-of-range number', JSON.stringify({ ...valid, num1: '9223372036854775808' })],
    ['with a bad timestamp', JSON.stringify({ ...valid, acceptedAt: 'yesterday' })],
  ]) {
    it(`refuses a record ${label}`, () => {
      assert.throws(() => decodeSumAccepted(Buffer.from(value as string)), MalformedEventError);
    });
  }
});
