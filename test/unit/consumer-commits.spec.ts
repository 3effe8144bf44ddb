import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { Member } from '../../src/platform/kafka/group-member.ts';
import { ConsumerSession } from '../../src/platform/kafka/consumer-session.ts';
import type { IncomingRecord } from '../../src/platform/kafka/records.ts';

const TOPIC = 'sums';

/** A member whose consumer records the offsets of each commit, answering each after `commitMs`. */
function memberRecordingCommits(options: { commitMs?: number; fail?: Error } = {}) {
  const commits: { sentAt: number; offsets: Record<number, string> }[] = [];
  const stream = Object.assign(new EventEmitter(), {
    read: () => null,
    pause: () => {},
    resume: () => {},
    close: async () => {},
    offsetsToFetch: new Map(),
  });
  const consumer = {
    consume: async () => stream,
    metadata: async () => ({ topics: new Map([[TOPIC, { id: 'topic-id' }]]) }),
    assignments: [],
    async commit({ offsets }: { offsets: { partition: number; offset: bigint }[] }) {
      commits.push({ sentAt: Date.now(), offsets: Object.fromEntries(offsets.map((o) => [o.partition, o.offset.toString()])) });
      await new Promise((resolve) => setTimeout(resolve, options.commitMs ?? 5));
      if (options.fail) throw options.fail;
    },
  };
  const member: Member = { consumer: consumer as unknown as Member['consumer'], broken: null, onBreak: null };
  return { member, commits };
}

const open = (member: Member, commitIntervalMs: number) =>
  ConsumerSession.open(member, { topic: TOPIC, maxBatchSize: 100, commitIntervalMs, report: () => {} });

const at = (partition: number, offset: number) => ({ partition, offset: BigInt(offset) }) as IncomingRecord;

describe('ConsumerSession commits', () => {
  it('sends the first batch at once, and the batches applied within the interval together in one commit after it', async () => {
    const { member, commits } = memberRecordingCommits();
    const session = await open(member, 500);
    session.commitSoon([at(0, 0), at(1, 4)]);
    session.commitSoon([at(0, 1)]);
    assert.equal(commits.length, 1, 'the first commit is sent at once');
    await new Promise((resolve) => setTimeout(resolve, 20));
    session.commitSoon([at(0, 2), at(1, 5)]);
    assert.equal(commits.length, 1, 'the second waits for the interval');
    for (const deadline = Date.now() + 5_000; commits.length < 2 && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(
      commits.map((c) => c.offsets),
      [{ 0: '1', 1: '5' }, { 0: '3', 1: '6' }],
    );
    assert.ok(commits[1]!.sentAt - commits[0]!.sentAt >= 495, 'the second waited for the interval');
    await session.close();
  });

  it('sends what is queued at once when the session ends, and never moves a commit backwards', async () => {
    const { member, commits } = memberRecordingCommits();
    const session = await open(member, 60_000);
    session.commitSoon([at(0, 9)]);
    session.commitSoon([at(0, 12)]);
    session.commitSoon([at(0, 3)]); // read again after a rebalance: already past
    const started = Date.now();
    await session.flushCommits();
    assert.ok(Date.now() - started < 1_000, 'the interval is cut short');
    assert.deepEqual(
      commits.map((c) => c.offsets),
      [{ 0: '10' }, { 0: '13' }],
    );
    await session.close();
  });

  it('breaks the session when a commit fails, and flushCommits rejects with it', async () => {
    const { member } = memberRecordingCommits({ fail: new Error('ILLEGAL_GENERATION') });
    const session = await open(member, 0);
    session.commitSoon([at(0, 0)]);
    await assert.rejects(session.flushCommits(), /ILLEGAL_GENERATION/);
    assert.match(String(session.failure), /ILLEGAL_GENERATION/);
    await session.close();
  });
});
