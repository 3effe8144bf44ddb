import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, it } from 'node:test';
import { createEventPublisher } from '../../src/platform/kafka/publisher.ts';
import { freePort } from '../../tools/lib/free-port.ts';

/** Counts the Kafka producers the client library creates while `work` runs. */
async function countProducersCreated(work: () => Promise<void>): Promise<number> {
  let created = 0;
  const onInstance = (message: unknown) => {
    if ((message as { type?: string }).type === 'producer') created += 1;
  };
  subscribe('plt:kafka:instances', onInstance);
  try {
    await work();
  } finally {
    unsubscribe('plt:kafka:instances', onInstance);
  }
  return created;
}

describe('EventPublisher against an unreachable broker', () => {
  it('backs off before creating the next producer: failing publishes in a tight loop do not create one each', async () => {
    // Nothing listens there: every connection attempt is refused at once, so a send fails after its
    // retries (two, 10 ms apart; the library retries an idempotent producer's sends forever when
    // told one or none) within milliseconds.
    const brokers = [`127.0.0.1:${await freePort()}`];
    const publisher = createEventPublisher({ brokers, clientId: 'backoff-test' }, { retries: 2, retryDelayMs: 10 });
    let publishes = 0;
    const created = await countProducersCreated(async () => {
      const until = Date.now() + 3_000;
      while (Date.now() < until) {
        publishes += 1;
        await publisher.publish('sums', [{ key: 'k', value: 'v' }]).then(
          () => assert.fail('nothing listens on that port'),
          () => {},
        );
      }
    });
    await publisher.close();
    // 100 ms doubling: 0 + 100 + 200 + 400 + 800 + 1600 ms fit in 3 s, so at most 6 producers.
    assert.ok(created >= 2, `a new producer after a failed send (${created} created)`);
    assert.ok(created <= 7, `${created} producers for ${publishes} failed publishes in 3 s: the backoff bounds them`);
  });
});
