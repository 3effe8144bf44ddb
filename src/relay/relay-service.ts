import { CALCULATOR_MIGRATIONS, CALCULATOR_SCHEMA } from '../calculator/schema.ts';
import { OutboxRelay } from '../outbox/outbox-relay.ts';
import { readOutboxBacklog } from '../outbox/outbox-store.ts';
import { createEventPublisher } from '../platform/kafka/publisher.ts';
import { followKafkaRequests } from '../platform/kafka/request-counts.ts';
import type { Logger } from '../platform/logger.ts';
import { startService, type RunningService } from '../platform/service/service-host.ts';
import { kafkaSettingsOf } from '../platform/service/service-config.ts';
import { ensureServiceTopics } from '../platform/service/service-topics.ts';
import type { RelayConfig } from './config.ts';
import { createRelayMetrics } from './metrics.ts';
import { OutboxAgeWatch } from './outbox-age-watch.ts';

export interface RunningRelay extends RunningService {
  readonly relay: OutboxRelay;
}

/** The relay: moves outbox events to Kafka. Any number of instances may run against one database. */
export function startRelay(config: RelayConfig, logger: Logger): Promise<RunningRelay> {
  return startService(
    {
      name: 'relay',
      config,
      // Every write of the relay may be lost in a crash of PostgreSQL without harm: a lost claim or
      // release makes rows claimable again, a lost delete has them published once more (the consumer
      // skips them by event id), a lost failure count costs one more attempt. Not waiting for the
      // WAL flush spares an fsync per statement.
      pool: { max: config.workers + 2, synchronousCommit: false },
      // The outbox belongs to the calculator; whichever starts first creates it.
      schema: { name: CALCULATOR_SCHEMA, migrations: CALCULATOR_MIGRATIONS },
    },
    logger,
    async ({ pool, registry }) => {
      const kafka = kafkaSettingsOf(config, 'summa-relay');
      await ensureServiceTopics(kafka, config, [config.topic], logger, registry);
      const publisher = createEventPublisher(kafka, { publishTimeoutMs: config.publishTimeoutMs });
      const metrics = createRelayMetrics(registry, pool, config.dedupWindowSeconds);
      const ageWatch = new OutboxAgeWatch(
        async () => (await readOutboxBacklog(pool)).oldestAgeSeconds,
        config.dedupWindowSeconds,
        OutboxAgeWatch.intervalFor(config.dedupWindowSeconds),
        logger,
      );
      const unfollow = followKafkaRequests({
        onSend: (records) => metrics.recordsProduced.inc(records),
        onProduce: () => metrics.produceRequests.inc(),
      });
      const relay = new OutboxRelay(
        pool,
        config.databaseUrl,
        publisher,
        {
          batchSize: config.batchSize,
          workers: config.workers,
          pollIntervalMs: config.pollIntervalMs,
          lingerMs: config.lingerMs,
          leaseMs: config.leaseMs,
          maxAttempts: config.maxAttempts,
          vacuum: { everyRows: config.vacuumEveryRows, minIntervalMs: config.vacuumMinIntervalMs },
        },
        logger,
        metrics,
      );
      return {
        async start() {
          // Parked events stay until someone releases them; say so at every start, not only once.
          const backlog = await readOutboxBacklog(pool).catch(() => undefined);
          if (backlog && backlog.parked > 0) {
            logger.warn({ parked: backlog.parked }, `${backlog.parked} outbox event(s) are parked; list them with summa outbox parked`);
          }
          relay.start();
          ageWatch.start();
          return {
            relay,
            // Under change data capture the outbox stays empty: the capture slot's lag stands for its age.
            warnings: () => ageWatch.warnings(),
            // The batches in flight are published and deleted before the producer closes; whatever a
            // relay did not finish stays in the outbox for the next one.
            stopSteps: { beforeDelay: [() => ageWatch.stop(), () => relay.stop(), () => publisher.close()], afterHttpClose: [async () => unfollow()] },
          };
        },
      };
    },
  );
}
