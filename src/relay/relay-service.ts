import { CALCULATOR_MIGRATIONS, CALCULATOR_SCHEMA } from '../calculator/schema.ts';
import { OutboxRelay } from '../outbox/outbox-relay.ts';
import { createEventPublisher } from '../platform/kafka/publisher.ts';
import type { Logger } from '../platform/logger.ts';
import { startService, type RunningService } from '../platform/service/service-host.ts';
import { ensureServiceTopics } from '../platform/service/service-topics.ts';
import type { RelayConfig } from './config.ts';
import { createRelayMetrics } from './metrics.ts';

export interface RunningRelay extends RunningService {
  readonly relay: OutboxRelay;
}

/** The relay: moves outbox events to Kafka. Any number of instances may run against one database. */
export function startRelay(config: RelayConfig, logger: Logger): Promise<RunningRelay> {
  return startService(
    {
      name: 'relay',
      config,
      pool: { max: config.workers + 2 },
      // The outbox belongs to the calculator; whichever starts first creates it.
      schema: { name: CALCULATOR_SCHEMA, migrations: CALCULATOR_MIGRATIONS },
    },
    logger,
    async ({ pool, registry }) => {
      const kafka = { brokers: config.kafkaBrokers, clientId: 'summa-relay' };
      await ensureServiceTopics(kafka, config, [config.topic], logger, registry);
      const publisher = createEventPublisher(kafka);
      const relay = new OutboxRelay(
        pool,
        config.databaseUrl,
        publisher,
        { batchSize: config.batchSize, workers: config.workers, pollIntervalMs: config.pollIntervalMs, lingerMs: config.lingerMs },
        logger,
        createRelayMetrics(registry, pool),
      );
      return {
        async start() {
          relay.start();
          return {
            relay,
            // The batches in flight are published and deleted before the producer closes; whatever a
            // relay did not finish stays in the outbox for the next one.
            stopSteps: { beforeDelay: [() => relay.stop(), () => publisher.close()] },
          };
        },
      };
    },
  );
}
