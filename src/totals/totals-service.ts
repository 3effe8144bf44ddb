import { createBatchConsumer } from '../platform/kafka/batch-consumer.ts';
import { createEventPublisher } from '../platform/kafka/publisher.ts';
import type { Logger } from '../platform/logger.ts';
import { startService, type RunningService } from '../platform/service/service-host.ts';
import { ensureServiceTopics } from '../platform/service/service-topics.ts';
import { createBatchApplier } from './batch-applier.ts';
import type { TotalsConfig } from './config.ts';
import { createDeadLetterSink } from './dead-letters.ts';
import { registerTotalsRoutes } from './http-routes.ts';
import { createTotalsMetrics, registerConsumerLagGauge } from './metrics.ts';
import { TOTALS_MIGRATIONS, TOTALS_SCHEMA } from './schema.ts';
import { TotalsStore } from './totals-store.ts';

export type RunningTotals = RunningService;

/** The totals service: a consumer-group member that applies events to the total, and its REST API. */
export function startTotals(config: TotalsConfig, logger: Logger): Promise<RunningTotals> {
  return startService(
    { name: 'totals', config, pool: { max: 6 }, schema: { name: TOTALS_SCHEMA, migrations: TOTALS_MIGRATIONS } },
    logger,
    async ({ pool, registry, http }) => {
      const kafka = { brokers: config.kafkaBrokers, clientId: 'summa-totals' };
      await ensureServiceTopics(kafka, config, [config.topic, config.deadLetterTopic], logger, registry);
      const deadLetterPublisher = createEventPublisher(kafka);

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
      registerTotalsRoutes(http, store);
      return {
        async start() {
          await consumer.start();
          return {
            // The batch in flight is applied and committed, and the group left, before reads stop
            // being served; a successor resumes from that commit.
            stopSteps: { beforeDelay: [() => consumer.close(), () => deadLetterPublisher.close()] },
          };
        },
      };
    },
  );
}
