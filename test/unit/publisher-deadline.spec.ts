import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { blamePublishFailure } from '../../src/platform/kafka/publish-failures.ts';
import { createEventPublisher, PublishTimeoutError } from '../../src/platform/kafka/publisher.ts';
import { freePort } from '../../tools/lib/free-port.ts';

/** `work`, or a failure if it has not settled within `ms`. */
async function within<T>(ms: number, what: string, work: Promise<T>): Promise<PromiseSettledResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = Promise.allSettled([work]).then(([result]) => result!);
  try {
    return await Promise.race([outcome, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms}ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

// Regressions: a send of the library's idempotent producer may take as long as the library's
// retries and timeouts allow, forever when told 0 retries (seen right after a partition leader was
// killed, and when the login was refused), and with one send in flight at a time that stalled every
// later publish, and the relay's claim loop with it; close() waited for it too.
describe('EventPublisher against a Kafka that never settles a send', () => {
  // Accepts connections and never answers: every request waits for the client's own timeouts.
  let silent: Server;
  const sockets = new Set<Socket>();
  let brokers: string[];

  before(async () => {
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    brokers = [`127.0.0.1:${(silent.address() as { port: number }).port}`];
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  });

  it('fails a publish once its timeout passed, as Kafka being unavailable, and the next publish is sent by a new producer', async () => {
    const publisher = createEventPublisher({ brokers, clientId: 'deadline-test' }, { publishTimeoutMs: 500, minProducerBackoffMs: 10 });
    let producers = 0;
    const onInstance = (message: unknown) => {
      if ((message as { type?: string }).type === 'producer') producers += 1;
    };
    subscribe('plt:kafka:instances', onInstance);
    try {
      for (const attempt of [1, 2]) {
        const startedAt = Date.now();
        const result = await within(3_000, `publish ${attempt}`, publisher.publish('sums', [{ key: 'k', value: `v${attempt}` }]));
        assert.equal(result.status, 'rejected');
        const error = (result as PromiseRejectedResult).reason as Error;
        assert.ok(error instanceof PublishTimeoutError, String(error));
        assert.match(error.message, /did not acknowledge the publish within 500 ms/);
        assert.equal(blamePublishFailure(error), 'unavailable');
        assert.ok(Date.now() - startedAt >= 450, `failed after ${Date.now() - startedAt}ms, before its timeout`);
        assert.equal(producers, attempt, 'a producer per send: the one of the abandoned send is not used again');
      }
    } finally {
      unsubscribe('plt:kafka:instances', onInstance);
      await within(5_000, 'close', publisher.close());
    }
  });

  it('fails the publishes waiting behind a hung one by their own timeout, not after it', async () => {
    const publisher = createEventPublisher({ brokers, clientId: 'deadline-test' }, { publishTimeoutMs: 800 });
    try {
      const first = within(3_000, 'the hung publish', publisher.publish('sums', [{ key: 'k', value: 'first' }]));
      await new Promise((resolve) => setTimeout(resolve, 400));
      const startedAt = Date.now();
      const second = await within(3_000, 'the publish behind', publisher.publish('sums', [{ key: 'k', value: 'second' }]));
      assert.equal(second.status, 'rejected');
      assert.ok(Date.now() - startedAt <= 1_500, `the publish behind a hung one took ${Date.now() - startedAt}ms`);
      assert.equal((await first).status, 'rejected');
    } finally {
      await within(5_000, 'close', publisher.close());
    }
  });
});

describe('EventPublisher retries', () => {
  it('fails a publish to an unreachable broker with retries 0, which the library would take for "retry forever"', async () => {
    const brokers = [`127.0.0.1:${await freePort()}`];
    const publisher = createEventPublisher({ brokers, clientId: 'retries-test' }, { retries: 0, publishTimeoutMs: 60_000 });
    try {
      const result = await within(3_000, 'publish with retries 0', publisher.publish('sums', [{ key: 'k', value: 'v' }]));
      assert.equal(result.status, 'rejected');
      assert.ok(!((result as PromiseRejectedResult).reason instanceof PublishTimeoutError));
    } finally {
      await within(5_000, 'close', publisher.close());
    }
  });

  it('refuses retries 1, which the library cannot do for an idempotent producer', () => {
    assert.throws(() => createEventPublisher({ brokers: ['127.0.0.1:9092'], clientId: 'retries-test' }, { retries: 1 }), /retries/);
  });
});
