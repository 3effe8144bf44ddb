import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SummaError, type ErrorCode } from '../../src/platform/errors.ts';
import { grpcStatusOf } from '../../src/platform/grpc/status.ts';
import { httpStatusOf } from '../../src/platform/http/status.ts';

// A Record over the whole union: a new ErrorCode does not typecheck until its statuses are pinned here.
// The numbers are what clients see on the wire, so they are spelled out rather than taken from grpc-js.
const EXPECTED: Record<ErrorCode, { grpc: number; http: number }> = {
  INVALID_ARGUMENT: { grpc: 3, http: 400 },
  OUT_OF_RANGE: { grpc: 11, http: 400 },
  ALREADY_EXISTS: { grpc: 6, http: 422 },
  NOT_FOUND: { grpc: 5, http: 404 },
  UNAVAILABLE: { grpc: 14, http: 503 },
  DEADLINE_EXCEEDED: { grpc: 4, http: 504 },
  RESOURCE_EXHAUSTED: { grpc: 8, http: 429 },
  UNAUTHENTICATED: { grpc: 16, http: 401 },
  INTERNAL: { grpc: 13, http: 500 },
};

describe('error statuses', () => {
  for (const [code, expected] of Object.entries(EXPECTED) as [ErrorCode, { grpc: number; http: number }][]) {
    it(`answers ${code} with gRPC ${expected.grpc} and HTTP ${expected.http}`, () => {
      const error = new SummaError(code, 'a message');
      assert.equal(grpcStatusOf(error), expected.grpc);
      assert.equal(httpStatusOf(error), expected.http);
    });
  }
});
