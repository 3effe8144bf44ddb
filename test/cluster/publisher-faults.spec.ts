// The relay's publisher against a real 3-node SASL_SSL Kafka cluster when Kafka fails under it: a
// partition leader killed mid-stream, and a login that is refused. @platformatic/kafka 1.35's
// idempotent producer left a send unsettled for good in both cases when told 0 retries (it takes
// that for "forever"); one send in flight at a time, that stalled the relay's claim loop. The
// publisher passes 5 and bounds each publish by its timeout besides (test/unit/publisher-deadline.spec.ts
// is the test that fails without that bound); here every publish must settle within it.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Admin } from '@platformatic/kafka';
import { startKafkaCluster, type KafkaCluster } from '../../tools/local-stack/kafka-cluster.ts';
import { createBatchConsumer } from '../../src/platform/kafka/batch-consumer.ts';
import { blamePublishFailure } from '../../src/platform/kafka/publish-failures.ts';
import { createEventPublisher, DEFAULT_PUBLISH_TIMEOUT_MS, type EventPublisher } from '../../src/platform/kafka/publisher.ts';
import { baseClientOptions, type KafkaSettings } from '../../src/platform/kafka/settings.ts';
import { missingTool } from '../support/tools.ts';
import { uniqueName } from '../support/test-environment.ts';

const skip = missingTool('openssl');
const topic = uniqueName('summa.sums');
const groupId = uniqueName('summa-totals');
// The publisher through the leader's death gives up on a publish after this long; every publish
// must settle within its timeout and a margin.
const PUBLISH_TIMEOUT_MS = 8_000;
const MARGIN_MS = 5_000;

let dataDir: string;
let cluster: KafkaCluster | undefined;

class Unsettled extends Error {}

/** `publish`, or an Unsettled error if it neither resolved nor rejected within `boundMs`. */
async function settled(publish: Promise<void>, what: string, boundMs = PUBLISH_TIMEOUT_MS + MARGIN_MS): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      publish,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Unsettled(`${what} neither succeeded nor failed within ${boundMs}ms`)), boundMs))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The messages of an error, its causes and the errors it aggregates, on one line. */
function messagesOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const nested = [(error as Error & { errors?: unknown[] }).errors ?? [], error.cause === undefined ? [] : [error.cause]].flat();
  return [error.message, ...nested.map(messagesOf)].join(' | ');
}

async function leaders(settings: KafkaSettings): Promise<number[]> {
  const admin = new Admin({ ...baseClientOptions(settings), retries: 2 });
  try {
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
    return (metadata.topics.get(topic)?.partitions ?? []).map((p) => p.leader);
  } finally {
    await admin.close().catch(() => {});
  }
}

describe("the relay's publisher on a 3-node SASL_SSL Kafka cluster that fails under it", { skip, timeout: 240_000 }, () => {
  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-publisher-faults-'));
    const started = Date.now();
    cluster = await startKafkaCluster({ dataDir, ports: [0, 0, 0], controllerPorts: [0, 0, 0], security: 'sasl_ssl' });
    await cluster.setUpServiceAccess({ topic, deadLetterTopic: `${topic}.dlq`, groupId });
    console.log(`kafka cluster ${cluster.brokers} ready in ${Date.now() - started}ms`);
  });

  after(async () => {
    await cluster?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('fails a publish with a wrong password soon, saying the login was refused and blaming Kafka, not the event', async () => {
    const relay = cluster!.clientSettings('summa-relay', 'publisher-faults-test');
    const wrongPassword: KafkaSettings = { ...relay, security: { ...relay.security!, sasl: { ...relay.security!.sasl!, password: 'not-the-password' } } };
    // The default timeout: the library's retries of the login fail it sooner, with the reason.
    const publisher = createEventPublisher(wrongPassword);
    try {
      for (const attempt of [1, 2]) {
        const startedAt = Date.now();
        const publish = publisher.publish(topic, [{ key: 'k', value: `refused-${attempt}` }]);
        await assert.rejects(settled(publish, `publish ${attempt}`, DEFAULT_PUBLISH_TIMEOUT_MS + MARGIN_MS), (error: unknown) => {
          assert.ok(!(error instanceof Unsettled), String(error));
          assert.match(String(error), /Kafka refused the login of summa-relay \(SASL authentication failed\)/);
          assert.match(messagesOf(error), /SASL authentication failed/);
          assert.equal(blamePublishFailure(error), 'unavailable');
          return true;
        });
        console.log(`publish ${attempt} with a wrong password failed after ${Date.now() - startedAt}ms`);
      }
    } finally {
      await settled(publisher.close(), 'close');
    }
  });

  it('settles every publish while a partition leader is killed, and delivers every event once Kafka moved leadership', async () => {
    const admin = cluster!.clientSettings('summa-admin', 'publisher-faults-test');
    const publisher: EventPublisher = createEventPublisher(cluster!.clientSettings('summa-relay', 'publisher-faults-test'), { publishTimeoutMs: PUBLISH_TIMEOUT_MS });
    const events = Array.from({ length: 60 }, (_, index) => `event-${index}`);
    const failures: string[] = [];
    let killedAt = 0;
    let killing: Promise<void> | undefined;
    try {
      // As the relay: one publish at a time, a failed one retried after a pause. The leader is
      // killed while they go on, so that some send is in flight to it.
      for (const [index, event] of events.entries()) {
        if (index === 10) {
          const leaderIds = await leaders(admin);
          const victimId = leaderIds[0]!;
          killedAt = Date.now();
          killing = cluster!.nodes.find((node) => node.id === victimId)!.kill();
          console.log(`killing node ${victimId}, leader of partitions ${leaderIds.flatMap((leader, p) => (leader === victimId ? [p] : [])).join(',')}`);
        }
        for (;;) {
          const startedAt = Date.now();
          try {
            await settled(publisher.publish(topic, [{ key: `key-${index}`, value: event }]), `publish of ${event}`);
            break;
          } catch (error) {
            if (error instanceof Unsettled) throw error;
            failures.push(`${event} after ${Date.now() - startedAt}ms: ${blamePublishFailure(error)}: ${messagesOf(error).slice(0, 200)}`);
            assert.equal(blamePublishFailure(error), 'unavailable', messagesOf(error));
            if (killedAt && Date.now() - killedAt > 90_000) assert.fail(`no publish of ${event} within 90s of the kill:\n${failures.join('\n')}`);
            await new Promise((resolve) => setTimeout(resolve, 500));
          }
        }
      }
      console.log(`all ${events.length} published ${Date.now() - killedAt}ms after the kill; ${failures.length} failed publish(es):\n${failures.join('\n')}`);
    } finally {
      await killing;
      await settled(publisher.close(), 'close');
    }

    const seen = new Set<string>();
    const consumer = createBatchConsumer({ ...admin, brokers: cluster!.nodes.filter((node) => node.running()).map((node) => node.brokers), groupId, topic, startTimeoutMs: 90_000 }, async (records) => {
      for (const record of records) seen.add(record.value.toString());
    });
    try {
      await consumer.start();
      const deadline = Date.now() + 60_000;
      while (events.some((event) => !seen.has(event))) {
        if (Date.now() > deadline) assert.fail(`not delivered: ${events.filter((event) => !seen.has(event)).join(', ')}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    } finally {
      await consumer.close();
    }
  });
});
