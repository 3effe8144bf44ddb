import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { ConsumerSession } from '../../src/platform/kafka/consumer-session.ts';
import type { Member } from '../../src/platform/kafka/group-member.ts';

const TOPIC = 'sums';

/** The message stream of the library, as far as a session reads it: records are read() from a buffer. */
class FakeStream extends EventEmitter {
  readonly buffered: unknown[] = [];
  readonly offsetsToFetch = new Map<string, bigint>();
  read(): unknown {
    return this.buffered.shift() ?? null;
  }
  pause(): void {}
  resume(): void {}
  async close(): Promise<void> {}
  /** Records arriving from a fetch: buffered, then 'readable'. */
  arrive(...offsets: number[]): void {
    for (const offset of offsets) this.buffered.push(message(offset));
    this.emit('readable');
  }
}

function message(offset: number) {
  return { topic: TOPIC, partition: 0, offset: BigInt(offset), key: Buffer.from(`k${offset}`), value: Buffer.from('{}'), headers: new Map(), timestamp: 0n };
}

async function openSession(stream: FakeStream): Promise<ConsumerSession> {
  const member = {
    broken: null,
    onBreak: null,
    consumer: {
      consume: async () => stream,
      metadata: async () => ({ topics: new Map([[TOPIC, { id: 'topic-id' }]]) }),
      assignments: [{ topic: TOPIC, partitions: [0] }],
      topics: { untrack() {} },
    },
  } as unknown as Member;
  return ConsumerSession.open(member, { topic: TOPIC, maxBatchSize: 500, commitIntervalMs: 0, report: () => {} });
}

describe('ConsumerSession.nextBatch()', () => {
  it('hands out the records a fetch brought at once, without waiting on a timer for more', async (t) => {
    const stream = new FakeStream();
    const session = await openSession(stream);
    // With timers frozen, a batch that waited for more records would never be handed out.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const closing = new AbortController();
    const batch = session.nextBatch(closing.signal);
    stream.arrive(7);
    const settled = await Promise.race([batch, new Promise<'waiting'>((resolve) => setImmediate(() => resolve('waiting')))]);
    closing.abort();
    assert.notEqual(settled, 'waiting', 'a lone record waited for a timer');
    assert.deepEqual(
      (settled as Awaited<typeof batch>).map((record) => record.offset),
      [7n],
    );
  });

  it('hands out everything buffered together, up to maxBatchSize', async () => {
    const stream = new FakeStream();
    const session = await openSession(stream);
    stream.arrive(1, 2, 3);
    const batch = await session.nextBatch(new AbortController().signal);
    assert.deepEqual(batch.map((record) => record.offset), [1n, 2n, 3n]);
  });

  it('waits, without a timer, until records arrive', async () => {
    const stream = new FakeStream();
    const session = await openSession(stream);
    const batch = session.nextBatch(new AbortController().signal);
    await new Promise((resolve) => setImmediate(resolve));
    stream.arrive(4, 5);
    assert.deepEqual((await batch).map((record) => record.offset), [4n, 5n]);
  });
});

