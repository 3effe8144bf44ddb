import { createGrpcServerMetrics } from '../platform/grpc/server-metrics.ts';
import type { Logger } from '../platform/logger.ts';
import { CaptureSlotMonitor } from '../outbox/capture-slot-monitor.ts';
import { ensureOutboxPublication } from '../outbox/outbox-capture.ts';
import { OutboxNotifier } from '../outbox/outbox-notifier.ts';
import { createPool } from '../platform/db/pool.ts';
import { PeriodPartitions } from '../platform/db/period-partitions.ts';
import { registerRetentionMetrics } from '../platform/db/retention-metrics.ts';
import { startService, type RunningService } from '../platform/service/service-host.ts';
import type { CalculatorConfig } from './config.ts';
import { startCalculatorGrpcServer } from './grpc-server.ts';
import { registerCalculatorRoutes } from './http-routes.ts';
import { createCalculatorMetrics } from './metrics.ts';
import { CALCULATOR_MIGRATIONS, CALCULATOR_SCHEMA } from './schema.ts';
import { SumRecorder } from './sum-recorder.ts';

export interface RunningCalculator extends RunningService {
  readonly grpcPort: number;
}

/** The calculator: gRPC and HTTP in front of one SumRecorder. */
export function startCalculator(config: CalculatorConfig, logger: Logger): Promise<RunningCalculator> {
  return startService(
    {
      name: 'calculator',
      config,
      pool: {
        max: config.databasePoolSize,
        connectTimeoutMs: config.databaseConnectTimeoutMs,
        queryTimeoutMs: config.databaseQueryTimeoutMs,
      },
      schema: { name: CALCULATOR_SCHEMA, migrations: CALCULATOR_MIGRATIONS },
    },
    logger,
    ({ pool, registry, http }) => {
      const notifier = new OutboxNotifier(pool, logger);
      const recorder = new SumRecorder(
        pool,
        {
          topic: config.topic,
          maxBatchSize: config.maxBatchSize,
          maxConcurrentWrites: config.maxConcurrentWrites,
          maxQueued: config.maxQueued,
          deleteOutboxRows: config.relayMode === 'debezium',
        },
        logger,
        createCalculatorMetrics(registry),
        // No relay polls the outbox under change data capture: nobody to wake.
        config.relayMode === 'debezium' ? () => {} : () => notifier.committed(),
      );
      // The idempotency records, kept for the window and dropped a partition at a time.
      // A connection of its own, without the service's statement timeouts: a checkpoint reads a whole
      // period, and dropping a partition waits for the transactions that may still read it.
      const retentionPool = createPool(config.databaseUrl, { max: 1, applicationName: 'summa-calculator-retention', statementTimeoutMs: 0 });
      const requestPartitions = new PeriodPartitions(
        retentionPool,
        { schema: CALCULATOR_SCHEMA, table: 'requests', amountColumn: 'sum', ...config.idempotency },
        logger,
      );
      registerRetentionMetrics(registry, { [`${CALCULATOR_SCHEMA}.requests`]: requestPartitions });
      const slotMonitor = config.captureSlot && new CaptureSlotMonitor(pool, config.captureSlot, registry, logger);
      const add = recorder.record.bind(recorder);
      registerCalculatorRoutes(http, add, { writeToken: config.writeToken });
      return {
        async start() {
          // The connector is told not to make the publication (it would publish every operation):
          // the outbox's owner makes it, once its table exists, unless someone made it already.
          if (config.relayMode === 'debezium') await ensureOutboxPublication(pool);
          const grpc = await startCalculatorGrpcServer({
            host: config.host,
            port: config.grpcPort,
            add,
            logger,
            metrics: createGrpcServerMetrics(registry),
            tls: config.tls,
            writeToken: config.writeToken,
          });
          slotMonitor?.start();
          requestPartitions.start();
          const { delayMs, timeoutMs } = config.shutdown;
          return {
            grpcPort: grpc.port,
            // Readiness first (the gRPC health check with it), then a pause while load balancers
            // notice, then the listeners close and wait for the calls in flight; those wait on the
            // recorder, which is drained before the pool ends, and so is the relays' last wake-up.
            stopSteps: {
              beforeDelay: [() => grpc.markNotServing()],
              withHttpClose: [() => grpc.shutdown(Math.max(1_000, timeoutMs - delayMs - 1_000))],
              afterHttpClose: [() => recorder.drain(), () => notifier.drain(), async () => slotMonitor?.stop(), () => requestPartitions.stop(), () => retentionPool.end()],
            },
          };
        },
      };
    },
  );
}
