import { createPool } from '../platform/db/pool.ts';
import { createBatchConsumer } from '../platform/kafka/batch-consumer.ts';
import type { PartitionStall } from '../platform/kafka/partition-stalls.ts';
import { createEventPublisher } from '../platform/kafka/publisher.ts';
import { followKafkaRequests } from '../platform/kafka/request-counts.ts';
import { baseClientOptions, parseBrokerList } from '../platform/kafka/settings.ts';
import { readRunState } from '../cli/run-state.ts';
import { kafkaConnectionOptions } from '../cli/status-kafka.ts';
import type { Logger } from '../platform/logger.ts';
import { PeriodPartitions } from '../platform/db/period-partitions.ts';
import { registerRetentionMetrics } from '../platform/db/retention-metrics.ts';
import { startService, type RunningService } from '../platform/service/service-host.ts';
import { kafkaSettingsOf } from '../platform/service/service-config.ts';
import { ensureServiceTopics } from '../platform/service/service-topics.ts';
import { announceApplied, AppliedRequests } from './applied-requests.ts';
import { createBatchApplier } from './batch-applier.ts';
import type { TotalsConfig } from './config.ts';
import { createDeadLetterSink } from './dead-letters.ts';
import { registerTotalsRoutes } from './http-routes.ts';
import { createTotalsMetrics, registerConsumerLagGauge, registerReplicaReadMetrics, registerStalledPartitionsGauge } from './metrics.ts';
import { TotalReader } from './total-reads.ts';
import { TOTALS_MIGRATIONS, TOTALS_SCHEMA } from './schema.ts';
import { TotalsStore } from './totals-store.ts';
import { registerConsoleRoutes } from './console/console-routes.ts';
import { PipelineSampler } from './console/pipeline-sampler.ts';
import { runStateAckSource } from './console/ack-latency.ts';
import { pipelineStatus } from './console/pipeline-status.ts';
import { bucketCounts } from './console/latency-window.ts';
import { TopicBrowser, type BrowserClientOptions } from './console/topic-browser.ts';

export type RunningTotals = RunningService;

/** The totals service: a consumer-group member that applies events to the total, and its REST API. */
export function startTotals(config: TotalsConfig, logger: Logger): Promise<RunningTotals> {
  return startService(
    { name: 'totals', config, pool: { max: 6 }, schema: { name: TOTALS_SCHEMA, migrations: TOTALS_MIGRATIONS } },
    logger,
    async ({ pool, registry, http }) => {
      const kafka = kafkaSettingsOf(config, 'summa-totals');
      // The dead-letter topic is not waited for: valid records do not wait for it (rejected records
      // are kept in totals.rejected_records without it).
      await ensureServiceTopics(kafka, config, [config.topic], logger, registry, [config.deadLetterTopic]);
      const deadLetterPublisher = createEventPublisher(kafka, { publishTimeoutMs: config.publishTimeoutMs });

      const store = new TotalsStore(pool);
      const metrics = createTotalsMetrics(registry, store);
      const unfollow = followKafkaRequests({
        onFetch: (records) => {
          metrics.fetches.inc();
          metrics.recordsFetched.inc(records);
        },
        onOffsetCommit: () => metrics.offsetCommits.inc(),
      });
      const appliedRequests = new AppliedRequests();
      const consumer = createBatchConsumer(
        {
          ...kafka,
          groupId: config.groupId,
          topic: config.topic,
          maxBatchSize: config.maxBatchSize,
          commitIntervalMs: config.commitIntervalMs,
          stallAfterMs: config.stallAfterMs,
          storedOffsets: (topicId, partitions) => store.readOffsets(config.groupId, config.topic, topicId, partitions),
          onError: (error, context) => logger.warn({ err: error, context }, 'Kafka consumer recovered from an error'),
        },
        announceApplied(appliedRequests, createBatchApplier({
          store,
          groupId: config.groupId,
          logger,
          metrics,
          deadLetters: createDeadLetterSink(deadLetterPublisher, config.deadLetterTopic),
        })),
      );
      // The applied events, kept for the dedup window and dropped a partition at a time.
      // A connection of its own, without the service's statement timeouts: a checkpoint reads a whole
      // period, and dropping a partition waits for the transactions that may still read it.
      const retentionPool = createPool(config.databaseUrl, { max: 1, applicationName: 'summa-totals-retention', statementTimeoutMs: 0 });
      const appliedPartitions = new PeriodPartitions(
        retentionPool,
        { schema: TOTALS_SCHEMA, table: 'applied_events', amountColumn: 'amount', ...config.dedup },
        logger,
      );
      registerRetentionMetrics(registry, { [`${TOTALS_SCHEMA}.applied_events`]: appliedPartitions });
      registerConsumerLagGauge(registry, () => consumer.lag());
      registerStalledPartitionsGauge(registry, () => consumer.stalled());
      // Readiness does not follow the replica: while it is down every read falls back to the
      // primary, so this instance still serves; and as all instances share one replica, failing
      // readiness would take every one of them out of the load balancer at once.
      // summa_totals_replica_up and the log show the outage instead.
      const readPool = config.readDatabaseUrl
        ? createPool(config.readDatabaseUrl, { max: 4, applicationName: 'summa-totals-reads', connectTimeoutMs: 1_000, queryTimeoutMs: 2_000 })
        : undefined;
      const onRead = registerReplicaReadMetrics(registry, readPool && (() => reader.readReplicaLag()));
      const reader = new TotalReader({ primary: pool, replica: readPool, logger, onRead, appliedRequests });
      registerTotalsRoutes(http, store, reader);
      let started = false;
      const sampler = new PipelineSampler({
        pool,
        store,
        logger,
        endToEnd: async () => bucketCounts((await metrics.endToEndSeconds.get()).values),
        ack: runStateAckSource(config.console.runDataDir),
        status: pipelineStatus({
          runDataDir: config.console.runDataDir,
          ownLag: () => consumer.lag(),
          ownProblem: () => (started ? describeStalls(consumer.stalled()) : 'starting'),
        }),
      });
      const browser = new TopicBrowser({
        clientOptions: () => consoleKafkaOptions(config.console.runDataDir, baseClientOptions(kafkaSettingsOf(config, 'summa-console'))),
        topic: config.topic,
        groupId: config.groupId,
      });
      registerConsoleRoutes(http, { pool, sampler, browser, calculatorUrl: config.console.calculatorUrl });
      return {
        async start() {
          appliedPartitions.start();
          await consumer.start();
          started = true;
          return {
            notReadyReason: () => describeStalls(consumer.stalled()),
            // The batch in flight is applied and committed, and the group left, before reads stop
            // being served; a successor resumes from that commit.
            stopSteps: {
              beforeDelay: [() => sampler.stop(), () => consumer.close(), () => deadLetterPublisher.close(), () => browser.close()],
              afterHttpClose: [async () => readPool?.end(), async () => unfollow(), () => appliedPartitions.stop(), () => retentionPool.end()],
            },
          };
        },
      };
    },
  );
}

/** Readiness's reason for stalled partitions; undefined when none is. */
function describeStalls(stalls: PartitionStall[]): string | undefined {
  if (stalls.length === 0) return undefined;
  return stalls.map((stall) => `partition ${stall.partition} stalled at offset ${stall.offset} (${stall.reason}): ${stall.detail}`).join('; ');
}

/**
 * The console browses Kafka as the launcher's administrator when a run state names one (in a
 * cluster this service's own user may only read its topic); otherwise as this service.
 */
async function consoleKafkaOptions(runDataDir: string | undefined, own: BrowserClientOptions): Promise<BrowserClientOptions> {
  const state = runDataDir === undefined ? null : await readRunState(runDataDir).catch(() => null);
  if (!state?.kafkaAdmin) return own;
  const { tls, sasl } = kafkaConnectionOptions(state.kafkaAdmin);
  return { clientId: own.clientId, bootstrapBrokers: parseBrokerList(state.kafkaBrokers), connectTimeout: own.connectTimeout, timeout: own.timeout, ...(tls ? { tls } : {}), ...(sasl ? { sasl } : {}) };
}
