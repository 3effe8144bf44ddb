import { migrate } from '../platform/db/migrate.ts';
import { createPool } from '../platform/db/pool.ts';
import { createHttpServer } from '../platform/http/server.ts';
import { createBatchConsumer } from '../platform/kafka/batch-consumer.ts';
import { createEventPublisher } from '../platform/kafka/publisher.ts';
import { ensureTopic } from '../platform/kafka/topics.ts';
import type { Logger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { retryUntilSuccess } from '../platform/retry.ts';
import { pause } from '../platform/service/shutdown.ts';
import { createBatchApplier } from './batch-applier.ts';
import type { TotalsConfig } from './config.ts';
import { createDeadLetterSink } from './dead-letters.ts';
import { registerTotalsRoutes } from './http-routes.ts';
import { createTotalsMetrics, registerConsumerLagGauge } from './metrics.ts';
import { TOTALS_MIGRATIONS, TOTALS_SCHEMA } from './schema.ts';
import { TotalsStore } from './totals-store.ts';

export interface RunningTotals {
  readonly httpPort: number;
  readonly shutdownTimeoutMs: number;
  stop(): Promise<void>;
}

/** The totals service: a consumer-group member that applies events to the total, and its REST API. */
export async function startTotals(config: TotalsConfig, logger: Logger): Promise<RunningTotals> {
  const pool = createPool(config.databaseUrl, { max: 6, applicationName: 'summa-totals' });
  await retryUntilSuccess('migrating the totals schema', () => migrate(pool, TOTALS_SCHEMA, TOTALS_MIGRATIONS), logger);
  const kafka = { brokers: config.kafkaBrokers, clientId: 'summa-totals' };
  await retryUntilSuccess('creating the Kafka topic', () => ensureTopic(kafka, config.topic, config.topicPartitions), logger);
  await retryUntilSuccess(
    'creating the dead-letter topic',
    () => ensureTopic(kafka, config.deadLetterTopic, config.topicPartitions),
    logger,
  );
  const deadLetterPublisher = createEventPublisher(kafka);

  const registry = createMetricsRegistry('totals');
  const store = new TotalsStore(pool);
  const metrics = createTotalsMetrics(registry, store);
  const consumer = createBatchConsumer(
    {
      ...kafka,
      groupId: config.groupId,
      topic: config.topic,
      maxBatchSize: config.maxBatchSize,
      onError: (error, context) => logger.warn({ err: error, context }, 'Kafka consumer recovered from an error'),
    },
    createBatchApplier(store, config.groupId, logger, metrics, createDeadLetterSink(deadLetterPublisher, config.deadLetterTopic)),
  );
  registerConsumerLagGauge(registry, () => consumer.lag());

  let ready = false;
  const http = createHttpServer({ logger, registry, isReady: () => ready, tls: config.tls });
  registerTotalsRoutes(http, store);
  await http.listen({ host: config.host, port: config.httpPort });
  await consumer.start();
  ready = true;

  const address = http.server.address();
  return {
    httpPort: typeof address === 'object' && address ? address.port : config.httpPort,
    shutdownTimeoutMs: config.shutdown.timeoutMs,
    // The batch in flight is applied and committed, and the group left, before reads stop being
    // served; a successor resumes from that commit.
    async stop() {
      ready = false;
      const stoppedAt = Date.now();
      await consumer.close();
      await deadLetterPublisher.close();
      await pause(config.shutdown.delayMs - (Date.now() - stoppedAt));
      await http.close();
      await pool.end();
    },
  };
}
