import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MultipleErrors, NetworkError, ProtocolError } from '@platformatic/kafka';
import type { Member } from '../../src/platform/kafka/group-member.ts';
import { ConsumerSession, staleCoordinator } from '../../src/platform/kafka/consumer-session.ts';

// Regression: with the group coordinator of a 3-node cluster killed, every totals consumer kept
// failing to join with "This is not the correct coordinator": the library looks the coordinator up
// once per consumer. Such a member must be marked broken, so that a new consumer replaces it.
// As the library reports it: the retries' errors, each holding the broker's answer.
const joinFailure = (apiId: string) =>
  new MultipleErrors('joinGroup failed 4 times.', [new MultipleErrors('Received response with error while executing API JoinGroup(v9)', [new ProtocolError(apiId)])]);

function memberFailingWith(error: Error): Member {
  const consumer = {
    consume: async () => {
      throw error;
    },
    topics: { untrack: () => {} },
  };
  return { consumer: consumer as unknown as Member['consumer'], broken: null, onBreak: null };
}

describe('a join sent to a broker that no longer coordinates the group', () => {
  it('tells NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE apart from other failures', () => {
    assert.equal(staleCoordinator(joinFailure('NOT_COORDINATOR')), true);
    assert.equal(staleCoordinator(joinFailure('COORDINATOR_NOT_AVAILABLE')), true);
    assert.equal(staleCoordinator(joinFailure('COORDINATOR_LOAD_IN_PROGRESS')), false);
    assert.equal(staleCoordinator(new NetworkError('Connection closed')), false);
    assert.equal(staleCoordinator(new Error('plain')), false);
  });

  it('breaks the member, so that the next session gets a new consumer', async () => {
    const member = memberFailingWith(joinFailure('NOT_COORDINATOR'));
    await assert.rejects(ConsumerSession.open(member, { topic: 't' } as never));
    assert.ok(member.broken, 'the member is broken');
  });

  it('keeps the member for other failures (it rejoins under the same member id)', async () => {
    const member = memberFailingWith(new NetworkError('Connection closed'));
    await assert.rejects(ConsumerSession.open(member, { topic: 't' } as never));
    assert.equal(member.broken, null);
  });
});
