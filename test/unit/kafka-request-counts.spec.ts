import assert from 'node:assert/strict';
import { tracingChannel } from 'node:diagnostics_channel';
import { describe, it } from 'node:test';
import { followKafkaRequests } from '../../src/platform/kafka/request-counts.ts';

// The channels @platformatic/kafka publishes on; a request is told as its response arrives.
const api = tracingChannel('plt:kafka:connections:api');
const sends = tracingChannel('plt:kafka:producer:sends');

const answered = (context: object) => api.asyncStart.publish(context);

describe('followKafkaRequests', () => {
  it('counts produce requests, the records of fetch responses and offset commits, each by its API key', () => {
    const seen = { sent: [] as number[], produced: 0, fetched: [] as number[], commits: 0 };
    const unfollow = followKafkaRequests({
      onSend: (records) => seen.sent.push(records),
      onProduce: () => seen.produced++,
      onFetch: (records) => seen.fetched.push(records),
      onOffsetCommit: () => seen.commits++,
    });
    try {
      sends.start.publish({ options: { messages: [{}, {}, {}] } });
      answered({ apiKey: 0, result: {} });
      answered({ apiKey: 1, result: { responses: [{ partitions: [{ records: [{ records: [1, 2] }, { records: [3] }] }, {}] }, { partitions: [{ records: [{ records: [4] }] }] }] } });
      answered({ apiKey: 1, result: { responses: [{ partitions: [{}] }] } });
      answered({ apiKey: 8, result: {} });
      answered({ apiKey: 3, result: {} }); // metadata: not counted
      answered({ apiKey: 0, error: new Error('refused') }); // failed: not counted
    } finally {
      unfollow();
    }
    answered({ apiKey: 0, result: {} });
    assert.deepEqual(seen, { sent: [3], produced: 1, fetched: [4, 0], commits: 1 });
  });
});
