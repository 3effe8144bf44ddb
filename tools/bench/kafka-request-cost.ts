// `node --import tsx tools/bench/kafka-request-cost.ts [--kafka-os-flush] [--records 4000] [--flow-batch 10]`
//
// What one request costs the broker, apart from the pipeline: a single local broker (as the bench
// runs it, each record flushed before its ack unless --kafka-os-flush), one idempotent producer
// sending the same records N at a time, one request in flight as the relay does, and a consumer
// group committing offsets one after another as totals does. The broker's CPU time (from /proc)
// per request and per record shows how much of Kafka's share is per request, so how much batching
// can save. The broker's CPU at rest, measured first, is taken off. Last, a steady flow of records
// through the publisher to a consumer group that commits after each batch and then at most every
// 200 ms gives the broker's CPU per record of each. Prints JSON.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Consumer } from '@platformatic/kafka';
import { startKafkaBroker } from '../local-stack/kafka-broker.ts';
import { createBatchConsumer } from '../../src/platform/kafka/batch-consumer.ts';
import { createEventPublisher } from '../../src/platform/kafka/publisher.ts';
import { followKafkaRequests } from '../../src/platform/kafka/request-counts.ts';
import { ensureTopic } from '../../src/platform/kafka/topics.ts';
import { cpuSeconds } from './process-stats.ts';

const { values: flags } = parseArgs({
  options: {
    'kafka-os-flush': { type: 'boolean', default: false },
    records: { type: 'string', default: '4000' },
    'flow-batch': { type: 'string', default: '10' },
  },
});
const RECORDS = Number(flags.records);
const COMMITS = 300;
const IDLE_SECONDS = 5;
// The flow phase: records published in small batches at a steady rate to a consumer group that
// applies them (a short pause per batch, standing for the database), once per commit interval.
const FLOW_SECONDS = 10;
const FLOW_BATCH = Number(flags['flow-batch']);
const FLOW_EVERY_MS = 20;
const round = (value: number, digits = 3) => Number(value.toFixed(digits));

const dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-kafka-cost-'));
const broker = await startKafkaBroker({ dataDir, port: 0, flushEveryRecord: !flags['kafka-os-flush'] });
try {
  const settings = { brokers: [broker.brokers], clientId: 'kafka-request-cost' };
  const topic = 'cost';
  await ensureTopic(settings, topic, { partitions: 6 });
  const publisher = createEventPublisher(settings);
  const payload = Buffer.from(JSON.stringify({ type: 'SumAccepted', version: 1, eventId: '00000000-0000-0000-0000-000000000000', a: '1', b: '2', sum: '3' }));
  const record = (i: number) => ({ key: `request-${i}`, value: payload, headers: { 'content-type': 'application/json', 'summa-event-id': String(i) } });
  await publisher.publish(topic, [record(0)]); // producer id and metadata before measuring
  // The broker's own background work (controller, log cleaner, flusher), taken off each figure below.
  const idle0 = cpuSeconds(broker.pid);
  await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
  const idleMsPerSecond = ((cpuSeconds(broker.pid) - idle0) * 1000) / IDLE_SECONDS;
  const busyMs = (cpuMs: number, seconds: number) => Math.max(0, cpuMs - idleMsPerSecond * seconds);

  const produce: Record<string, unknown>[] = [];
  for (const perRequest of [1, 10, 50, 200]) {
    const requests = Math.ceil(RECORDS / perRequest);
    const cpu0 = cpuSeconds(broker.pid);
    const started = performance.now();
    for (let i = 0; i < requests; i++) await publisher.publish(topic, Array.from({ length: perRequest }, (_, j) => record(i * perRequest + j)));
    const seconds = (performance.now() - started) / 1000;
    const brokerMs = busyMs((cpuSeconds(broker.pid) - cpu0) * 1000, seconds);
    produce.push({
      records_per_request: perRequest,
      requests,
      seconds: round(seconds, 2),
      broker_cpu_ms_per_request: round(brokerMs / requests),
      broker_cpu_ms_per_record: round(brokerMs / (requests * perRequest)),
    });
  }

  const flow: Record<string, unknown>[] = [];
  for (const commitIntervalMs of [0, 200]) {
    const flowTopic = `flow-${commitIntervalMs}`;
    await ensureTopic(settings, flowTopic, { partitions: 6 });
    let applied = 0;
    let batches = 0;
    const consumer = createBatchConsumer({ ...settings, groupId: `flow-${commitIntervalMs}`, topic: flowTopic, commitIntervalMs }, async (records) => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      applied += records.length;
      batches++;
    });
    await consumer.start();
    let commits = 0;
    const unfollow = followKafkaRequests({ onOffsetCommit: () => commits++ });
    const cpu0 = cpuSeconds(broker.pid);
    const started = performance.now();
    let sent = 0;
    while (performance.now() - started < FLOW_SECONDS * 1000) {
      const tick = performance.now();
      await publisher.publish(flowTopic, Array.from({ length: FLOW_BATCH }, (_, j) => record(sent + j)));
      sent += FLOW_BATCH;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, FLOW_EVERY_MS - (performance.now() - tick))));
    }
    while (applied < sent && performance.now() - started < (FLOW_SECONDS + 30) * 1000) await new Promise((resolve) => setTimeout(resolve, 10));
    const seconds = (performance.now() - started) / 1000;
    const brokerMs = busyMs((cpuSeconds(broker.pid) - cpu0) * 1000, seconds);
    unfollow();
    await consumer.close();
    flow.push({
      commit_interval_ms: commitIntervalMs,
      records: sent,
      records_per_second: round(sent / seconds, 0),
      consumer_batches: batches,
      offset_commits: commits,
      broker_cpu_ms_per_record: round(brokerMs / sent),
    });
  }
  await publisher.close();

  const consumer = new Consumer({ ...settings, groupId: 'cost-commits', bootstrapBrokers: settings.brokers, autocommit: false });
  const stream = await consumer.consume({ topics: [topic], autocommit: false, mode: 'earliest' });
  stream.on('data', () => {});
  const cpu0 = cpuSeconds(broker.pid);
  const started = performance.now();
  for (let i = 1; i <= COMMITS; i++) {
    await consumer.commit({ offsets: [0, 1, 2, 3, 4, 5].map((partition) => ({ topic, partition, offset: BigInt(i), leaderEpoch: -1 })) });
  }
  const commitSeconds = (performance.now() - started) / 1000;
  const commitMs = busyMs((cpuSeconds(broker.pid) - cpu0) * 1000, commitSeconds);
  await stream.close();
  await consumer.close();

  console.log(
    JSON.stringify(
      {
        date: new Date().toISOString(),
        broker_flush: flags['kafka-os-flush'] ? 'by the OS' : 'each record before its ack',
        load_average: os.loadavg().map((value) => round(value, 2)),
        broker_idle_cpu_ms_per_second: round(idleMsPerSecond, 1),
        produce,
        flow,
        offset_commits: { commits: COMMITS, seconds: round(commitSeconds, 2), broker_cpu_ms_per_commit: round(commitMs / COMMITS) },
      },
      null,
      2,
    ),
  );
} finally {
  await broker.stop();
  await rm(dataDir, { recursive: true, force: true });
}
