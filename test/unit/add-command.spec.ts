import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildAddCommand, replayOf } from '../../src/calculator/add-command.ts';
import { SummaError } from '../../src/platform/errors.ts';
import { INT64_MAX, INT64_MIN } from '../../src/platform/int64.ts';

function codeOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof SummaError, `expected a SummaError, got ${String(error)}`);
    return error.code;
  }
  assert.fail('expected an error');
}

describe('buildAddCommand', () => {
  it('adds numbers given as JSON numbers or decimal strings', () => {
    const command = buildAddCommand({ num1: 5, num2: '10', requestId: 'r-1' });
    assert.deepEqual(command, { num1: 5n, num2: 10n, sum: 15n, requestId: 'r-1' });
  });

  it('keeps int64 values exact beyond the range of doubles', () => {
    const command = buildAddCommand({ num1: '4611686018427387905', num2: '-3', requestId: 'r' });
    assert.equal(command.sum, 4611686018427387902n);
  });

  it('assigns a request id when none is given', () => {
    const command = buildAddCommand({ num1: 1, num2: 2 }, () => 'generated');
    assert.equal(command.requestId, 'generated');
  });

  it('accepts the int64 extremes when the sum fits', () => {
    assert.equal(buildAddCommand({ num1: INT64_MAX.toString(), num2: INT64_MIN.toString() }).sum, -1n);
  });

  it('refuses a sum that overflows int64 with OUT_OF_RANGE', () => {
    assert.equal(codeOf(() => buildAddCommand({ num1: INT64_MAX.toString(), num2: 1 })), 'OUT_OF_RANGE');
    assert.equal(codeOf(() => buildAddCommand({ num1: INT64_MIN.toString(), num2: -1 })), 'OUT_OF_RANGE');
  });

  it('refuses numbers outside int64 with OUT_OF_RANGE', () => {
    assert.equal(codeOf(() => buildAddCommand({ num1: '9223372036854775808', num2: 0 })), 'OUT_OF_RANGE');
    assert.equal(codeOf(() => buildAddCommand({ num1: 0, num2: '-9223372036854775809' })), 'OUT_OF_RANGE');
  });

  for (const [label, value] of [
    ['missing', undefined],
    ['null', null],
    ['a float', 1.5],
    ['an unsafe JSON number', 2 ** 60],
    ['a float string', '1.5'],
    ['a word', 'ten'],
    ['an empty string', ''],
    ['a boolean', true],
    ['an object', { value: 1 }],
    ['a hex string', '0x10'],
  ] as const) {
    it(`refuses num1 given as ${label} with INVALID_ARGUMENT`, () => {
      assert.equal(codeOf(() => buildAddCommand({ num1: value, num2: 1, requestId: 'r' })), 'INVALID_ARGUMENT');
    });
  }

  for (const [label, value] of [
    ['empty', ''],
    ['too long', 'x'.repeat(129)],
    ['with a control character', 'a\nb'],
    ['a number', 42],
    ['ending in a lone high surrogate', 'x\ud800'],
    ['starting with a lone low surrogate', '\udc00x'],
    ['holding surrogates in the wrong order', 'a\udc00\ud800b'],
  ] as const) {
    it(`refuses a request id that is ${label}`, () => {
      assert.equal(codeOf(() => buildAddCommand({ num1: 1, num2: 2, requestId: value })), 'INVALID_ARGUMENT');
    });
  }

  it('accepts characters outside the basic plane (surrogate pairs)', () => {
    assert.equal(buildAddCommand({ num1: 1, num2: 2, requestId: 'order-😀' }).requestId, 'order-😀');
  });

  it('accepts a 128-character unicode request id', () => {
    const requestId = 'é'.repeat(128);
    assert.equal(buildAddCommand({ num1: 1, num2: 2, requestId }).requestId, requestId);
  });
});

describe('replayOf', () => {
  const recorded = { num1: 2n, num2: 3n, sum: 5n };

  it('returns the recorded answer, marked replayed, for the same numbers', () => {
    const command = buildAddCommand({ num1: 2, num2: 3, requestId: 'same' });
    assert.deepEqual(replayOf(command, recorded), { requestId: 'same', sum: 5n, replayed: true });
  });

  it('refuses other numbers under the same request id with ALREADY_EXISTS', () => {
    const command = buildAddCommand({ num1: 3, num2: 2, requestId: 'same' });
    assert.equal(codeOf(() => replayOf(command, recorded)), 'ALREADY_EXISTS');
  });

  it('does not tell the caller which numbers the id was first used for', () => {
    const command = buildAddCommand({ num1: 30, num2: 20, requestId: 'same' });
    assert.throws(
      () => replayOf(command, { num1: 1234567n, num2: 7654321n, sum: 8888888n }),
      (error: Error) => !/1234567|7654321|8888888/.test(error.message) && /same/.test(error.message),
    );
  });
});
