import { CALCULATOR_MIGRATIONS, CALCULATOR_SCHEMA } from '../calculator/schema.ts';
import { migrate } from '../platform/db/migrate.ts';
import { createPool } from '../platform/db/pool.ts';
import { createHttpServer } from '../platform/http/server.ts';
import { createEventPublisher } from '../platform/kafka/publisher.ts';
import { ensureTopic } from '../platform/kafka/topics.ts';
import type { Logger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { retryUntilSuccess } from '../platform/retry.ts';
import { pause } from '../platform/service/shutdown.ts';
import type { RelayConfig } from './config.ts';
import { createRelayMetrics } from './metrics.ts';
import { OutboxRelay } from '../outbox/outbox-relay.ts';

export interface RunningRelay {
  readonly httpPort: number;
  readonly shutdownTimeoutMs: number;
  readonly relay: OutboxRelay;
  stop(): Promise<void>;
}

/** The relay: moves outbox events to Kafka. Any number of instances may run against one database. */
export async function startRelay(config: RelayConfig, logger: Logger): Promise<RunningRelay> {
  const pool = createPool(config.databaseUrl, { max: config.workers + 2, applicationName: 'summa-relay' });
  // The outbox belongs to the calculator; whichever starts first creates it.
  await retryUntilSuccess('migrating the calculator schema', () => migrate(pool, CALCULATOR_SCHEMA, CALCULATOR_MIGRATIONS), logger);
  const kafka = { brokers: config.kafkaBrokers, clientId: 'summa-relay' };
  await retryUntilSuccess('creating the Kafka topic', () => ensureTopic(kafka, config.topic, config.topicPartitions), logger);

  const registry = createMetricsRegistry('relay');
  const publisher = createEventPublisher(kafka);
  const relay = new OutboxRelay(
    pool,
    config.databaseUrl,
    publisher,
    { batchSize: config.batchSize, workers: config.workers, pollIntervalMs: config.pollIntervalMs, lingerMs: config.lingerMs },
    logger,
    createRelayMetrics(registry, pool),
  );
  let ready = false;
  const http = createHttpServer({ logger, registry, isReady: () => ready, tls: config.tls });
  await http.listen({ host: config.host, port: config.httpPort });
  relay.start();
  ready = true;

  const address = http.server.address();
  return {
    httpPort: typeof address === 'object' && address ? address.port : config.httpPort,
    relay,
    shutdownTimeoutMs: config.shutdown.timeoutMs,
    // The batches in flight are published and deleted before the producer closes; whatever a
    // relay did not finish stays in the outbox for the next one.
    async stop() {
      ready = false;
      const stoppedAt = Date.now();
      await relay.stop();
      await publisher.close();
      await pause(config.shutdown.delayMs - (Date.now() - stoppedAt));
      await http.close();
      await pool.end();
    },
  };
}
