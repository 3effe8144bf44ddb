import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SummaError } from '../../src/platform/errors.ts';
import { DEFAULT_AFTER_TIMEOUT_MS, MAX_AFTER_TIMEOUT_MS, parseTotalQuery } from '../../src/totals/total-query.ts';

function refused(query: Record<string, unknown>, message: RegExp) {
  assert.throws(
    () => parseTotalQuery(query),
    (error: unknown) => error instanceof SummaError && error.code === 'INVALID_ARGUMENT' && message.test(error.message),
  );
}

describe('GET /total query', () => {
  it('reads where reads are served, without waiting, when nothing is asked', () => {
    assert.deepEqual(parseTotalQuery({}), { consistency: 'eventual', after: undefined });
  });

  it('reads the primary for consistency=strong', () => {
    assert.deepEqual(parseTotalQuery({ consistency: 'strong' }), { consistency: 'strong', after: undefined });
    assert.deepEqual(parseTotalQuery({ consistency: 'eventual' }), { consistency: 'eventual', after: undefined });
  });

  it('waits for a request id, 5 s unless told, up to 30 s', () => {
    assert.deepEqual(parseTotalQuery({ after: 'req-1' }), { consistency: 'eventual', after: { requestId: 'req-1', timeoutMs: DEFAULT_AFTER_TIMEOUT_MS } });
    assert.deepEqual(parseTotalQuery({ after: 'req-1', timeoutMs: '0', consistency: 'strong' }), {
      consistency: 'strong',
      after: { requestId: 'req-1', timeoutMs: 0 },
    });
    assert.equal(parseTotalQuery({ after: 'r', timeoutMs: String(MAX_AFTER_TIMEOUT_MS) }).after?.timeoutMs, 30_000);
  });

  it('refuses what it cannot honour, naming the parameter', () => {
    refused({ consistency: 'STRONG' }, /consistency must be "eventual" or "strong"/);
    refused({ consistency: '' }, /consistency must be/);
    refused({ after: '' }, /request id must not be empty/);
    refused({ after: 'x'.repeat(129) }, /at most 128/);
    refused({ after: 'r', timeoutMs: '30001' }, /timeoutMs must be a whole number of milliseconds from 0 to 30000/);
    refused({ after: 'r', timeoutMs: '-1' }, /timeoutMs must be/);
    refused({ after: 'r', timeoutMs: '1.5' }, /timeoutMs must be/);
    refused({ after: 'r', timeoutMs: '' }, /timeoutMs must be/);
    refused({ timeoutMs: '100' }, /timeoutMs applies only with after/);
  });

  it('refuses unknown and repeated parameters rather than ignoring them', () => {
    refused({ consistancy: 'strong' }, /unknown query parameter "consistancy"/);
    refused({ after: ['a', 'b'] }, /after must be given once/);
  });
});
