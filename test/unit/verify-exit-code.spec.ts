import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { InvariantReport } from '../../src/cli/invariant-audit.ts';
import { VERIFY_EXIT, verifyExitCode } from '../../src/cli/verify-command.ts';

/** A report with no problem but those given: only `problems` decides the exit code. */
function reportWith(problems: Partial<InvariantReport['problems']>): InvariantReport {
  return {
    problems: {
      lost: 0,
      appliedTwice: 0,
      withoutRequest: 0,
      mismatched: 0,
      outboxWithoutRequest: 0,
      totalMismatch: false,
      withoutCheckpoint: 0,
      stuckOutbox: false,
      quarantined: 0,
      ...problems,
    },
  } as InvariantReport;
}

describe('summa verify exit codes', () => {
  it('gives quarantined events a code of their own, after every other outcome', () => {
    assert.equal(verifyExitCode(reportWith({}), false), VERIFY_EXIT.ok);
    assert.equal(verifyExitCode(reportWith({ quarantined: 2 }), false), VERIFY_EXIT.quarantined);
    assert.equal(VERIFY_EXIT.quarantined, 6);
    assert.equal(verifyExitCode(reportWith({ quarantined: 2 }), true), VERIFY_EXIT.notQuiet);
    assert.equal(verifyExitCode(reportWith({ quarantined: 2, stuckOutbox: true }), false), VERIFY_EXIT.stuck);
    assert.equal(verifyExitCode(reportWith({ quarantined: 2, lost: 1 }), false), VERIFY_EXIT.broken);
  });

  it('counts a dropped period without a checkpoint, or a checkpoint unlike the total, as a broken invariant', () => {
    assert.equal(verifyExitCode(reportWith({ withoutCheckpoint: 1 }), false), VERIFY_EXIT.broken);
    assert.equal(verifyExitCode(reportWith({ totalMismatch: true }), false), VERIFY_EXIT.broken);
  });
});
