// A real 3-node KRaft Kafka cluster with SASL_SSL (SCRAM-SHA-512) and ACLs, as `npm start -- --cluster`
// runs it: the event topic is spread over the brokers with 3 replicas, only the relay's user may
// write it, and an acks=all write still succeeds once the leader of its partition was killed.
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Admin, ConfigResourceTypes, Producer } from '@platformatic/kafka';
import { startKafkaCluster, type KafkaCluster } from '../../tools/local-stack/kafka-cluster.ts';
import { createBatchConsumer } from '../../src/platform/kafka/batch-consumer.ts';
import { createEventPublisher } from '../../src/platform/kafka/publisher.ts';
import { ensureTopic } from '../../src/platform/kafka/topics.ts';
import { baseClientOptions, type KafkaSettings } from '../../src/platform/kafka/settings.ts';
import { missingTool } from '../support/tools.ts';
import { uniqueName } from '../support/test-environment.ts';

const skip = missingTool('openssl');
const topic = uniqueName('summa.sums');
const deadLetterTopic = `${topic}.dlq`;
const groupId = uniqueName('summa-totals');
const HUNG = 'the produce neither succeeded nor failed within 15s';

let dataDir: string;
let cluster: KafkaCluster | undefined;

/** Partition -> leader, replicas and in-sync replicas of the event topic, as the cluster says now. */
async function describeTopic(settings: KafkaSettings): Promise<{ leader: number; replicas: number[]; isr: number[] }[]> {
  const admin = new Admin({ ...baseClientOptions(settings), retries: 2 });
  try {
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
    return (metadata.topics.get(topic)?.partitions ?? []).map((p) => ({ leader: p.leader, replicas: p.replicas, isr: p.isr }));
  } finally {
    await admin.close().catch(() => {});
  }
}

/**
 * One acks=all produce of one record to `partition`; rejects if it has not settled within 15s.
 * Idempotent unless said otherwise, with 3 retries of its own then (a fresh cluster may answer the
 * first InitProducerId with a retriable error), else none. Not 0 retries for an idempotent one:
 * @platformatic/kafka 1.35 takes its 0 (or 1) for "retry forever", which is why such a produce
 * never settled when the login was refused (it kept asking for a producer id) or right after a
 * partition leader was killed (it kept sending to the dead leader).
 */
async function produceOnce(settings: KafkaSettings, { partition, idempotent = true }: { partition?: number; idempotent?: boolean } = {}): Promise<void> {
  const producer = new Producer({ ...baseClientOptions(settings), retries: idempotent ? 3 : 0, retryDelay: 500, acks: -1, idempotent, autocreateTopics: false, requestTimeout: 10_000 });
  let timer: NodeJS.Timeout | undefined;
  try {
    const sent = producer.send({ messages: [{ topic, key: Buffer.from('k'), value: Buffer.from('v'), ...(partition === undefined ? {} : { partition }) }] });
    await Promise.race([sent, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(HUNG)), 15_000)))]);
  } finally {
    clearTimeout(timer);
    await new Promise<void>((resolve) => producer.close(true, () => resolve()));
  }
}

/** The messages of an error, its causes and the errors it aggregates, on one line. */
function messagesOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const nested = [(error as Error & { errors?: unknown[] }).errors ?? [], error.cause === undefined ? [] : [error.cause]].flat();
  return [error.message, ...nested.map(messagesOf)].join(' | ');
}

function hasApiError(error: unknown, apiId: string): boolean {
  const searchable = error as { findBy?: (property: string, value: unknown) => unknown } | null;
  return Boolean(searchable?.findBy?.('apiId', apiId)) || new RegExp(apiId).test(String((error as Error)?.message));
}

describe('a 3-node SASL_SSL Kafka cluster', { skip, timeout: 420_000 }, () => {
  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-kafka-cluster-'));
    const started = Date.now();
    cluster = await startKafkaCluster({ dataDir, ports: [0, 0, 0], controllerPorts: [0, 0, 0], security: 'sasl_ssl' });
    await cluster.setUpServiceAccess({ topic, deadLetterTopic, groupId });
    console.log(`kafka cluster ${cluster.brokers} ready in ${Date.now() - started}ms`);
  });

  after(async () => {
    await cluster?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('gives the event topic 6 partitions with 3 replicas and min.insync.replicas 2, led by more than one broker', async () => {
    const admin = cluster!.clientSettings('summa-admin', 'cluster-test');
    const partitions = await describeTopic(admin);
    assert.equal(partitions.length, 6);
    for (const partition of partitions) assert.deepEqual([...partition.replicas].sort(), [1, 2, 3]);
    assert.ok(new Set(partitions.map((p) => p.leader)).size > 1, `leaders: ${partitions.map((p) => p.leader).join(',')}`);
    const client = new Admin(baseClientOptions(admin));
    try {
      const [described] = await client.describeConfigs({
        resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: ['min.insync.replicas'] }],
      });
      assert.equal(described?.configs.find((config) => config.name === 'min.insync.replicas')?.value, '2');
    } finally {
      await client.close();
    }
  });

  it('keeps the generated passwords in files only their owner reads', async () => {
    const env = cluster!.clientEnv('summa-relay');
    assert.equal(env.KAFKA_SECURITY_PROTOCOL, 'SASL_SSL');
    assert.equal(env.KAFKA_SASL_USERNAME, 'summa-relay');
    assert.equal((await stat(env.KAFKA_SASL_PASSWORD_FILE!)).mode & 0o777, 0o600);
    assert.equal((await stat(cluster!.admin.passwordFile!)).mode & 0o777, 0o600);
  });

  it('refuses a client without credentials, and one with a wrong password', async () => {
    const relay = cluster!.clientSettings('summa-relay', 'cluster-test');
    const tlsOnly: KafkaSettings = { ...relay, security: { protocol: 'SSL', ca: relay.security!.ca } };
    const notProduced = (error: unknown) => !String(error).includes(HUNG);
    await assert.rejects(produceOnce(tlsOnly, { idempotent: false }), notProduced);
    const plaintext: KafkaSettings = { ...relay, security: { protocol: 'PLAINTEXT' } };
    await assert.rejects(produceOnce(plaintext, { idempotent: false }), notProduced);
    const wrongPassword: KafkaSettings = { ...relay, security: { ...relay.security!, sasl: { ...relay.security!.sasl!, password: 'not-the-password' } } };
    await assert.rejects(produceOnce(wrongPassword, { idempotent: false }), (error: unknown) => {
      assert.match(messagesOf(error), /SASL authentication failed/);
      return true;
    });
  });

  it('refuses writes to the event topic by the totals user, which may only read it', async () => {
    await assert.rejects(produceOnce(cluster!.clientSettings('summa-totals', 'cluster-test')), (error: unknown) => {
      assert.ok(hasApiError(error, 'TOPIC_AUTHORIZATION_FAILED'), `expected TOPIC_AUTHORIZATION_FAILED, got ${String(error)}`);
      return true;
    });
  });

  it('lets the relay user write the event topic through the relay publisher (idempotent, acks=all)', async () => {
    const publisher = createEventPublisher(cluster!.clientSettings('summa-relay', 'cluster-test'));
    try {
      await publisher.publish(topic, [{ key: 'a', value: 'one' }, { key: 'b', value: 'two' }]);
    } finally {
      await publisher.close();
    }
  });

  it("lets each service's user do what the service does at start-up and after: check its topics, consume in its group, write dead letters", async () => {
    const relay = cluster!.clientSettings('summa-relay', 'cluster-test');
    const totals = cluster!.clientSettings('summa-totals', 'cluster-test');
    // As ensureServiceTopics at start-up: the topics exist, so only their durability is read.
    for (const [settings, name] of [[relay, topic], [totals, topic], [totals, deadLetterTopic]] as const) {
      const found = await ensureTopic(settings, name, { partitions: 6 });
      assert.deepEqual({ created: found.created, shortfalls: found.shortfalls }, { created: false, shortfalls: [] }, `${settings.security?.sasl?.username} on ${name}`);
    }
    const publisher = createEventPublisher(relay);
    const deadLetters = createEventPublisher(totals);
    const seen = new Set<string>();
    const consumer = createBatchConsumer({ ...totals, groupId, topic, startTimeoutMs: 90_000 }, async (records) => {
      for (const record of records) seen.add(record.value.toString());
    });
    try {
      await publisher.publish(topic, [{ key: 'x', value: 'for-totals-1' }, { key: 'y', value: 'for-totals-2' }]);
      await consumer.start();
      const deadline = Date.now() + 60_000;
      while (!(seen.has('for-totals-1') && seen.has('for-totals-2'))) {
        if (Date.now() > deadline) assert.fail(`the totals user's consumer read only ${[...seen].join(', ')}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      await deadLetters.publish(deadLetterTopic, [{ key: 'x', value: 'rejected' }]);
    } finally {
      await Promise.allSettled([consumer.close(), publisher.close(), deadLetters.close()]);
    }
  });

  it('acknowledges an acks=all write once leadership moved from a killed leader, and takes the node back', async () => {
    const admin = cluster!.clientSettings('summa-admin', 'cluster-test');
    const relay = cluster!.clientSettings('summa-relay', 'cluster-test');
    const leaderId = (await describeTopic(admin))[0]!.leader;
    const victim = cluster!.nodes.find((node) => node.id === leaderId)!;
    const killedAt = Date.now();
    await victim.kill();
    assert.equal(victim.running(), false);

    // Until the controller fences the killed broker (broker.session.timeout.ms), writes to its
    // partitions fail; then another replica leads, and 2 in-sync replicas meet min.insync.replicas.
    const others = cluster!.nodes.filter((node) => node !== victim);
    const survivors: KafkaSettings = { ...relay, brokers: others.map((node) => node.brokers) };
    let lastError: unknown;
    let hung = 0;
    for (;;) {
      try {
        await produceOnce(survivors, { partition: 0 });
        break;
      } catch (error) {
        lastError = error;
        if (String(error).includes(HUNG)) hung += 1;
      }
      if (Date.now() - killedAt > 60_000) assert.fail(`no acks=all write to partition 0 within 60s of killing its leader: ${String(lastError)}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const moved = (await describeTopic({ ...admin, brokers: survivors.brokers }))[0]!;
    assert.notEqual(moved.leader, leaderId);
    assert.ok(moved.isr.length >= 2 && !moved.isr.includes(leaderId), `isr of partition 0: ${moved.isr.join(',')}`);
    console.log(`partition 0 writable again ${Date.now() - killedAt}ms after killing its leader (node ${leaderId}); now led by ${moved.leader}; ${hung} attempt(s) hung`);

    await victim.start();
    assert.equal(victim.running(), true);
    // Back in the cluster: it serves, and catches up until it is in sync again.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const partition = (await describeTopic(admin))[0]!;
      if (partition.isr.includes(leaderId)) break;
      if (Date.now() > deadline) assert.fail(`node ${leaderId} did not rejoin the in-sync replicas of partition 0: ${partition.isr.join(',')}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    await produceOnce(relay, { partition: 0 });
  });
});
