// Runs a real single-node Kafka broker (KRaft) in a temp dir and exercises the client layer in
// src/platform/kafka against it: round-trips, commit-after-success, retry of failed batches,
// rebalances, and broker restarts.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { Admin, ConfigResourceTypes, ConfigSources, Consumer, ListOffsetTimestamps } from '@platformatic/kafka';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { startKafkaBroker, type KafkaBroker } from '../../tools/local-stack/kafka-broker.ts';
import { createBatchConsumer, type BatchConsumer, type BatchConsumerOptions } from '../../src/platform/kafka/batch-consumer.ts';
import { createEventPublisher } from '../../src/platform/kafka/publisher.ts';
import type { IncomingRecord, OutgoingRecord } from '../../src/platform/kafka/records.ts';
import type { KafkaSettings } from '../../src/platform/kafka/settings.ts';
import { followKafkaRequests } from '../../src/platform/kafka/request-counts.ts';
import { ensureTopic } from '../../src/platform/kafka/topics.ts';
import { ensureServiceTopics } from '../../src/platform/service/service-topics.ts';

let dataDir: string;
let broker: KafkaBroker;
let settings: KafkaSettings;

before(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-kafka-test-'));
  const started = Date.now();
  broker = await startKafkaBroker({ dataDir, port: 0 });
  console.log(`kafka broker ${broker.brokers} (pid ${broker.pid}) ready in ${Date.now() - started}ms`);
  settings = { brokers: [broker.brokers], clientId: 'kafka-int-test' };
});

// Clients still open when a test failed midway; they would keep the process alive.
const openClients = new Set<{ close(): Promise<void> }>();
const track = <T extends { close(): Promise<void> }>(client: T): T => (openClients.add(client), client);

afterEach(async () => {
  await Promise.all([...openClients].map((client) => client.close().catch(() => {})));
  openClients.clear();
});

after(async () => {
  await broker?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

function records(count: number, tag: string, from = 0): OutgoingRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    key: `key-${(from + i) % 17}`,
    value: Buffer.from(`${tag}:${from + i}`),
    headers: { seq: String(from + i), tag },
  }));
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A consumer that records everything it is handed. */
function collector(options: Partial<BatchConsumerOptions> & { topic: string; groupId: string }, hook?: (batch: IncomingRecord[]) => Promise<void>) {
  const received: IncomingRecord[] = [];
  const batchSizes: number[] = [];
  let inFlight = 0;
  let overlapped = false;
  const consumer: BatchConsumer = track(createBatchConsumer({ ...settings, ...options }, async (batch) => {
    if (inFlight++ > 0) overlapped = true;
    try {
      await hook?.(batch);
      received.push(...batch);
      batchSizes.push(batch.length);
    } finally {
      inFlight--;
    }
  }));
  return { consumer, received, batchSizes, overlapped: () => overlapped };
}

const values = (list: IncomingRecord[]) => list.map((r) => r.value.toString());

async function endOffsets(topic: string): Promise<bigint[]> {
  const consumer = new Consumer({ clientId: 'offsets-probe', groupId: unique('probe'), bootstrapBrokers: settings.brokers });
  try {
    return (await consumer.listOffsets({ topics: [topic], timestamp: ListOffsetTimestamps.LATEST })).get(topic) ?? [];
  } finally {
    await consumer.close();
  }
}

/** Each partition's replica count, and the topic's min.insync.replicas with where that value comes from. */
async function describeTopic(topic: string): Promise<{ replicas: number[]; minInsync: string | null | undefined; minInsyncSource: number }> {
  const admin = new Admin({ clientId: 'describe-probe', bootstrapBrokers: settings.brokers });
  try {
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
    const [described] = await admin.describeConfigs({
      resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: ['min.insync.replicas'] }],
    });
    const minInsync = described!.configs.find((config) => config.name === 'min.insync.replicas')!;
    return {
      replicas: metadata.topics.get(topic)!.partitions.map((partition) => partition.replicas.length),
      minInsync: minInsync.value,
      minInsyncSource: minInsync.configSource,
    };
  } finally {
    await admin.close();
  }
}

describe('kafka client layer on a real broker', { timeout: 240_000 }, () => {
  it('ensureTopic creates a topic once, also when instances race', { timeout: 30_000 }, async () => {
    const topic = unique('topic');
    await Promise.all([ensureTopic(settings, topic, { partitions: 3 }), ensureTopic(settings, topic, { partitions: 3 }), ensureTopic(settings, topic, { partitions: 3 })]);
    await ensureTopic(settings, topic, { partitions: 3 });
    assert.equal((await endOffsets(topic)).length, 3);
  });

  it('ensureTopic creates a topic with the configured replication factor and min.insync.replicas as its own setting', { timeout: 30_000 }, async () => {
    const topic = unique('durable');
    const durability = await ensureTopic(settings, topic, { partitions: 2, replicationFactor: 1, minInsyncReplicas: 1 });
    assert.deepEqual(await describeTopic(topic), { replicas: [1, 1], minInsync: '1', minInsyncSource: ConfigSources.TOPIC_CONFIG });
    assert.equal(durability.created, true);
    assert.deepEqual(durability.shortfalls, []);

    // Left unset, both follow the cluster's size: a single broker gets 1 and 1.
    const byDefault = unique('durable-default');
    const defaults = await ensureTopic(settings, byDefault, { partitions: 1 });
    assert.deepEqual(defaults.wanted, { replicationFactor: 1, minInsyncReplicas: 1 });
    assert.deepEqual(await describeTopic(byDefault), { replicas: [1], minInsync: '1', minInsyncSource: ConfigSources.TOPIC_CONFIG });
  });

  it('reports an existing topic weaker than configured: a warning naming the shortfalls and a gauge', { timeout: 30_000 }, async () => {
    const topic = unique('weak');
    const admin = new Admin({ clientId: 'weak-topic-maker', bootstrapBrokers: settings.brokers });
    await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 });
    await admin.close();

    const lines: Record<string, any>[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const registry = new Registry();
    // Two replicas cannot be had on this one broker, but an existing topic is only checked, not created.
    await ensureServiceTopics(settings, { topicPartitions: 1, topicReplicationFactor: 2, topicMinInsyncReplicas: 2 }, [topic], logger, registry);

    const warning = lines.find((line) => line.level === 40 && line.topic === topic);
    assert.ok(warning, `a warning about ${topic}: ${JSON.stringify(lines)}`);
    assert.equal(warning.weakerThanConfigured, true);
    assert.match(warning.msg, /replication factor 1 < 2/);
    assert.match(warning.msg, /min\.insync\.replicas 1 < 2/);
    assert.match(await registry.metrics(), new RegExp(`summa_kafka_topic_weaker_than_configured\\{topic="${topic}"\\} 1`));
    assert.equal((await endOffsets(topic)).length, 1, 'the existing topic is left as it was');
  });

  it('runs the local broker so that a record is on disk before it is acknowledged', { timeout: 30_000 }, async () => {
    const admin = new Admin({ clientId: 'broker-config-probe', bootstrapBrokers: settings.brokers });
    try {
      const [described] = await admin.describeConfigs({
        resources: [{ resourceType: ConfigResourceTypes.BROKER, resourceName: '1', configurationKeys: ['log.flush.interval.messages'] }],
      });
      assert.equal(described!.configs.find((config) => config.name === 'log.flush.interval.messages')?.value, '1');
    } finally {
      await admin.close();
    }
  });

  it('delivers every published record once, in batches, with key, value and headers intact', { timeout: 60_000 }, async () => {
    const topic = unique('roundtrip');
    await ensureTopic(settings, topic, { partitions: 3 });
    const publisher = track(createEventPublisher(settings));
    const sent = records(1200, 'rt');
    for (let i = 0; i < sent.length; i += 300) await publisher.publish(topic, sent.slice(i, i + 300));
    await publisher.close();

    const { consumer, received, batchSizes, overlapped } = collector({ topic, groupId: unique('g'), maxBatchSize: 100 });
    await consumer.start();
    await waitFor('1200 records', () => received.length >= 1200);
    await new Promise((resolve) => setTimeout(resolve, 300)); // would catch extra deliveries
    await consumer.close();

    assert.equal(received.length, 1200);
    assert.deepEqual(new Set(values(received)), new Set(sent.map((r) => r.value.toString())));
    for (const record of received) {
      const seq = Number(record.headers.seq);
      assert.equal(record.topic, topic);
      assert.equal(record.key, `key-${seq % 17}`);
      assert.equal(record.value.toString(), `rt:${seq}`);
      assert.deepEqual(record.headers, { seq: String(seq), tag: 'rt' });
      assert.equal(typeof record.offset, 'bigint');
      assert.ok(record.timestamp > 0n);
    }
    // Same key -> same partition, and offsets increase within a partition.
    const partitionOfKey = new Map<string, number>();
    const lastOffset = new Map<number, bigint>();
    for (const record of received) {
      assert.equal(partitionOfKey.get(record.key!) ?? record.partition, record.partition);
      partitionOfKey.set(record.key!, record.partition);
      assert.ok(record.offset > (lastOffset.get(record.partition) ?? -1n), 'offsets increase within a partition');
      lastOffset.set(record.partition, record.offset);
    }
    assert.ok(new Set(received.map((r) => r.partition)).size > 1, 'records spread over partitions');
    assert.ok(Math.max(...batchSizes) <= 100, `batches respect maxBatchSize: ${Math.max(...batchSizes)}`);
    assert.ok(batchSizes.length < 1200, `records arrive batched (${batchSizes.length} batches)`);
    assert.equal(overlapped(), false, 'onBatch calls never overlap');
  });

  it('loses nothing when many publishes to one partition run concurrently', { timeout: 60_000 }, async () => {
    const topic = unique('concurrent');
    await ensureTopic(settings, topic, { partitions: 1 });
    const publisher = track(createEventPublisher(settings));
    // Same-size batches to one partition: what the library's sequence handling would silently drop.
    await Promise.all(Array.from({ length: 20 }, (_, i) => publisher.publish(topic, records(10, 'c', i * 10))));
    await publisher.close();
    assert.deepEqual(await endOffsets(topic), [200n]);
  });

  it('fails only the publish Kafka refuses for its own sake, not the others sent in the same request', { timeout: 60_000 }, async () => {
    const topic = unique('beside');
    const missing = unique('missing'); // never created; the broker does not create topics itself
    await ensureTopic(settings, topic, { partitions: 1 });
    const publisher = track(createEventPublisher(settings));
    // While the first send is in flight, the next two wait, and go out together in one request.
    const first = publisher.publish(topic, records(1, 'first'));
    const refused = publisher.publish(missing, records(1, 'refused'));
    const beside = publisher.publish(topic, records(1, 'beside'));
    await first;
    await assert.rejects(refused, /Unknown topic/);
    await beside;
    await publisher.close();
    assert.deepEqual(await endOffsets(topic), [2n]);
  });

  it('counts produce requests with the records sent, fetch responses with the records in them, and offset commits', { timeout: 60_000 }, async () => {
    const topic = unique('counts');
    await ensureTopic(settings, topic, { partitions: 2 });
    const seen = { sent: 0, produced: 0, fetches: 0, fetched: 0, commits: 0 };
    const unfollow = followKafkaRequests({
      onSend: (records) => (seen.sent += records),
      onProduce: () => seen.produced++,
      onFetch: (records) => {
        seen.fetches++;
        seen.fetched += records;
      },
      onOffsetCommit: () => seen.commits++,
    });
    try {
      const publisher = track(createEventPublisher(settings));
      await publisher.publish(topic, records(30, 'c'));
      // One send, one broker: one produce request for all 30 records, whatever their partitions.
      assert.deepEqual({ sent: seen.sent, produced: seen.produced }, { sent: 30, produced: 1 });
      const { consumer, received } = collector({ topic, groupId: unique('g') });
      await consumer.start();
      await waitFor('30 records', () => received.length >= 30);
      await consumer.close();
      assert.equal(seen.fetched, 30, 'every record was in some fetch response, once');
      assert.ok(seen.fetches >= 1 && seen.commits >= 1, `fetches ${seen.fetches}, commits ${seen.commits}`);
    } finally {
      unfollow();
    }
  });

  it('commits only what onBatch finished: a new member of the group gets only newer records', { timeout: 60_000 }, async () => {
    const topic = unique('commits');
    const groupId = unique('g');
    await ensureTopic(settings, topic, { partitions: 2 });
    const publisher = track(createEventPublisher(settings));
    await publisher.publish(topic, records(50, 'first'));

    const first = collector({ topic, groupId });
    await first.consumer.start();
    await waitFor('first 50', () => first.received.length >= 50);
    let lag = new Map<number, bigint>();
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
      lag = await first.consumer.lag();
      if (lag.size === 2 && [...lag.values()].every((l) => l === 0n)) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(lag, new Map([[0, 0n], [1, 0n]]), 'everything consumed is committed');
    await first.consumer.close();
    assert.equal(first.received.length, 50);

    await publisher.publish(topic, records(30, 'second'));
    await publisher.close();
    const second = collector({ topic, groupId });
    await second.consumer.start();
    await waitFor('30 new records', () => second.received.length >= 30);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await second.consumer.close();
    assert.equal(second.received.length, 30);
    assert.ok(values(second.received).every((v) => v.startsWith('second:')), 'no record of the first round again');
  });

  it('hands a batch whose onBatch threw to onBatch again, and skips nothing', { timeout: 60_000 }, async () => {
    const topic = unique('retry');
    const groupId = unique('g');
    await ensureTopic(settings, topic, { partitions: 1 });
    const publisher = track(createEventPublisher(settings));
    await publisher.publish(topic, records(40, 'r'));

    const attempts: IncomingRecord[][] = [];
    let failures = 0;
    const { consumer, received } = collector({ topic, groupId, maxBatchSize: 10 }, async (batch) => {
      attempts.push(batch);
      if (failures < 1) {
        failures++;
        throw new Error('simulated failure of the first batch');
      }
    });
    await consumer.start();
    await waitFor('40 records', () => received.length >= 40);
    await consumer.close();

    assert.equal(failures, 1);
    assert.ok(attempts.length >= 2);
    const offsets = (batch: IncomingRecord[]) => batch.map((r) => r.offset);
    assert.deepEqual(offsets(attempts[1]!), offsets(attempts[0]!), 'the failed batch comes again unchanged');
    assert.deepEqual(values(received), records(40, 'r').map((r) => r.value.toString()));

    // Nothing was committed past the failure: a fresh member of the group has nothing left to read.
    await publisher.publish(topic, records(1, 'after'));
    await publisher.close();
    const next = collector({ topic, groupId });
    await next.consumer.start();
    await waitFor('the one new record', () => next.received.length >= 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await next.consumer.close();
    assert.deepEqual(values(next.received), ['after:0']);
  });

  it('never commits a batch whose onBatch keeps failing: the next member of the group gets it', { timeout: 60_000 }, async () => {
    const topic = unique('poison');
    const groupId = unique('g');
    await ensureTopic(settings, topic, { partitions: 1 });
    const publisher = track(createEventPublisher(settings));
    await publisher.publish(topic, records(10, 'ok'));
    await publisher.publish(topic, [{ key: 'p', value: 'poison' }, ...records(5, 'later')]);
    await publisher.close();

    let failedAttempts = 0;
    const first = collector({ topic, groupId, maxBatchSize: 10 }, async (batch) => {
      if (values(batch).includes('poison')) {
        failedAttempts++;
        throw new Error('cannot process poison');
      }
    });
    await first.consumer.start();
    await waitFor('a few failed attempts', () => failedAttempts >= 3);
    await first.consumer.close();
    assert.deepEqual(values(first.received), records(10, 'ok').map((r) => r.value.toString()));

    const second = collector({ topic, groupId });
    await second.consumer.start();
    await waitFor('the poison batch again', () => second.received.length >= 6);
    await second.consumer.close();
    assert.deepEqual(values(second.received), ['poison', ...records(5, 'later').map((r) => r.value.toString())]);
  });

  it('shares partitions between members of a group and hands them over when one leaves', { timeout: 90_000 }, async () => {
    const topic = unique('rebalance');
    const groupId = unique('g');
    await ensureTopic(settings, topic, { partitions: 4 });
    const publisher = track(createEventPublisher(settings));

    const one = collector({ topic, groupId, maxBatchSize: 50 });
    const two = collector({ topic, groupId, maxBatchSize: 50 });
    await Promise.all([one.consumer.start(), two.consumer.start()]);
    // The group has settled once each member holds partitions and together they hold each of the
    // four exactly once; a member still holding its pre-rebalance assignment would overlap.
    const assigned = async (): Promise<[number[], number[]]> => [[...(await one.consumer.lag()).keys()], [...(await two.consumer.lag()).keys()]];
    let split: [number[], number[]] = [[], []];
    const deadline = Date.now() + 30_000;
    for (;;) {
      split = await assigned();
      const held = [...split[0], ...split[1]];
      if (split[0].length > 0 && split[1].length > 0 && held.length === 4 && new Set(held).size === 4) break;
      if (Date.now() > deadline) assert.fail(`the two members never shared the 4 partitions: ${JSON.stringify(split)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    // Published only now, so both members are in the group when the records arrive.
    await publisher.publish(topic, records(400, 'a'));
    const all = () => new Set([...values(one.received), ...values(two.received)]);
    await waitFor('400 distinct records over both members', () => all().size >= 400, 45_000);
    assert.deepEqual(new Set([...one.received, ...two.received].map((r) => r.partition)), new Set([0, 1, 2, 3]), 'the keys spread over every partition');
    assert.ok(one.received.length > 0 && two.received.length > 0, `both members got records: ${one.received.length} and ${two.received.length}`);
    for (const [member, partitions] of [[one, split[0]], [two, split[1]]] as const) {
      assert.ok(member.received.every((r) => partitions.includes(r.partition)), 'each member reads only the partitions it holds');
    }
    assert.equal(one.received.length + two.received.length, 400, 'no record went to both members');

    await one.consumer.close();
    await publisher.publish(topic, records(200, 'b'));
    await publisher.close();
    await waitFor('the remaining member gets all new records', () => values(two.received).filter((v) => v.startsWith('b:')).length >= 200, 45_000);
    assert.equal((await two.consumer.lag()).size, 4, 'the remaining member holds every partition');
    await two.consumer.close();
    assert.equal(all().size, 600);
  });

  it('keeps topics, records and committed offsets across a broker restart; clients reconnect', { timeout: 120_000 }, async () => {
    const topic = unique('restart');
    const groupId = unique('g');
    await ensureTopic(settings, topic, { partitions: 2 });
    const publisher = track(createEventPublisher(settings));
    await publisher.publish(topic, records(60, 'before'));

    const committed = collector({ topic, groupId });
    await committed.consumer.start();
    await waitFor('60 records before the restart', () => committed.received.length >= 60);
    await committed.consumer.close();

    // A second group keeps consuming while the broker goes away and comes back.
    const live = collector({ topic, groupId: unique('live') });
    await live.consumer.start();
    await waitFor('live member caught up', () => live.received.length >= 60);

    const { port, controllerPort, pid } = broker;
    await broker.stop();
    await assert.rejects(publisher.publish(topic, records(1, 'lost')), 'publishing without a broker fails');
    broker = await startKafkaBroker({ dataDir, port, controllerPort });
    assert.notEqual(broker.pid, pid);
    assert.equal(broker.brokers, settings.brokers[0]);

    assert.deepEqual((await endOffsets(topic)).reduce((a, b) => a + b, 0n), 60n, 'records survived');
    // The same publisher (and the same live consumer) carry on against the restarted broker.
    await publisher.publish(topic, records(40, 'after'));
    await publisher.close();

    const resumed = collector({ topic, groupId });
    await resumed.consumer.start();
    await waitFor('40 records after the restart', () => resumed.received.length >= 40);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await resumed.consumer.close();
    assert.equal(resumed.received.length, 40, 'the committed offsets survived the restart');
    assert.ok(values(resumed.received).every((v) => v.startsWith('after:')));

    await waitFor('live member got the records published after the restart', () => values(live.received).filter((v) => v.startsWith('after:')).length >= 40, 60_000);
    await live.consumer.close();
    assert.equal(new Set(values(live.received)).size, 100);
  });
});
