import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthenticationError, MultipleErrors, NetworkError, ProtocolError, TimeoutError, UserError } from '@platformatic/kafka';
import { blamePublishFailure } from '../../src/platform/kafka/publish-failures.ts';
import { PublishTimeoutError } from '../../src/platform/kafka/publisher.ts';

describe('blamePublishFailure', () => {
  it('blames the topic when it does not exist or may not be written, however deeply the client nests the reason', () => {
    assert.equal(blamePublishFailure(new UserError('Unknown topic gone.')), 'topic');
    assert.equal(blamePublishFailure(new ProtocolError('TOPIC_AUTHORIZATION_FAILED')), 'topic');
    const nested = new MultipleErrors('Producing messages failed.', [new MultipleErrors('inner', [new ProtocolError('UNKNOWN_TOPIC_OR_PARTITION')])]);
    assert.equal(blamePublishFailure(nested), 'topic');
  });

  it('blames the records when Kafka refuses one of them', () => {
    assert.equal(blamePublishFailure(new MultipleErrors('Producing messages failed.', [new ProtocolError('MESSAGE_TOO_LARGE')])), 'record');
    assert.equal(blamePublishFailure(new Error('wrapped', { cause: new ProtocolError('INVALID_RECORD') })), 'record');
  });

  it('blames Kafka for anything else, so that an outage never counts against an event', () => {
    for (const error of [
      new NetworkError('Connection to 127.0.0.1:9092 failed.'),
      new TimeoutError('Request timed out.'),
      new MultipleErrors('initProducerId failed 3 times.', [new NetworkError('refused'), new NetworkError('refused')]),
      new ProtocolError('NOT_ENOUGH_REPLICAS'),
      new ProtocolError('NOT_LEADER_OR_FOLLOWER'),
      new UserError('Client is closed.'),
      // A send abandoned at the publisher's deadline, and a refused login as the library reports it.
      new PublishTimeoutError(20_000),
      new MultipleErrors('initProducerId failed 6 times.', [
        new MultipleErrors('Cannot connect to any broker.', [new NetworkError('Connection to 127.0.0.1:9092 failed.', { cause: new AuthenticationError('SASL authentication failed.') })]),
      ]),
      new Error('Kafka refused the login of summa-relay (SASL authentication failed)', { cause: new AuthenticationError('SASL authentication failed.') }),
      new Error('something else'),
      'a string',
      undefined,
    ]) {
      assert.equal(blamePublishFailure(error), 'unavailable', String(error));
    }
  });
});
