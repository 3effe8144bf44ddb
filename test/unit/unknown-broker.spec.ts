import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Consumer, kGetConnection, NetworkError, Producer, type Broker, type Connection } from '@platformatic/kafka';
import { createMembership } from '../../src/platform/kafka/group-member.ts';
import { guardUnknownBrokers } from '../../src/platform/kafka/unknown-broker.ts';

// Regression: with a broker of a 3-node cluster killed, every totals consumer died at once of
// "TypeError: Cannot read properties of undefined (reading 'host')": the library asked for a
// connection to a group coordinator its cached metadata did not list, inside a socket callback.
const connect = (client: { [kGetConnection](broker: Broker, callback: (error: Error | null, connection?: Connection) => void): void }) =>
  new Promise<Error | null>((resolve, reject) => {
    try {
      client[kGetConnection](undefined as unknown as Broker, (error) => resolve(error));
    } catch (thrown) {
      reject(thrown as Error);
    }
  });

describe('a broker missing from the cached metadata', () => {
  it('is a retriable error for the consumer of a group member, and the metadata is read again', async () => {
    const membership = createMembership({ brokers: ['127.0.0.1:1'], clientId: 'unknown-broker-test', groupId: 'g', sessionTimeoutMs: 6_000, maxBatchSize: 10 });
    const { consumer } = await membership.current();
    let cleared = 0;
    const clear = consumer.clearMetadata.bind(consumer);
    consumer.clearMetadata = () => {
      cleared += 1;
      clear();
    };
    try {
      const error = await connect(consumer);
      assert.ok(error instanceof NetworkError, `expected a NetworkError, got ${String(error)}`);
      assert.equal((error as NetworkError & { canRetry?: boolean }).canRetry, true);
      assert.equal(cleared, 1);
    } finally {
      await membership.leave();
    }
  });

  it('is a retriable error for a producer too', async () => {
    const producer = guardUnknownBrokers(new Producer({ clientId: 'unknown-broker-test', bootstrapBrokers: ['127.0.0.1:1'] }));
    try {
      assert.ok((await connect(producer)) instanceof NetworkError);
    } finally {
      await producer.close(true);
    }
  });

  it('throws out of a plain client of the library, which is why the guard is there', async () => {
    const consumer = new Consumer({ clientId: 'unknown-broker-test', bootstrapBrokers: ['127.0.0.1:1'], groupId: 'g' });
    try {
      await assert.rejects(connect(consumer), TypeError);
    } finally {
      await consumer.close(true);
    }
  });
});
