import { migrate } from '../platform/db/migrate.ts';
import { createPool } from '../platform/db/pool.ts';
import { createGrpcServerMetrics } from '../platform/grpc/server-metrics.ts';
import { createHttpServer } from '../platform/http/server.ts';
import type { Logger } from '../platform/logger.ts';
import { pause } from '../platform/service/shutdown.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import type { CalculatorConfig } from './config.ts';
import { startCalculatorGrpcServer } from './grpc-server.ts';
import { registerCalculatorRoutes } from './http-routes.ts';
import { createCalculatorMetrics } from './metrics.ts';
import { CALCULATOR_MIGRATIONS, CALCULATOR_SCHEMA } from './schema.ts';
import { SumRecorder } from './sum-recorder.ts';

export interface RunningCalculator {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly shutdownTimeoutMs: number;
  stop(): Promise<void>;
}

/** The calculator: gRPC and HTTP in front of one SumRecorder. */
export async function startCalculator(config: CalculatorConfig, logger: Logger): Promise<RunningCalculator> {
  const pool = createPool(config.databaseUrl, {
    max: config.databasePoolSize,
    applicationName: 'summa-calculator',
    connectTimeoutMs: config.databaseConnectTimeoutMs,
    queryTimeoutMs: config.databaseQueryTimeoutMs,
  });
  await migrate(pool, CALCULATOR_SCHEMA, CALCULATOR_MIGRATIONS);

  const registry = createMetricsRegistry('calculator');
  const recorder = new SumRecorder(
    pool,
    {
      topic: config.topic,
      maxBatchSize: config.maxBatchSize,
      maxConcurrentWrites: config.maxConcurrentWrites,
      maxQueued: config.maxQueued,
    },
    logger,
    createCalculatorMetrics(registry),
  );
  const add = recorder.record.bind(recorder);

  let ready = false;
  const http = createHttpServer({ logger, registry, isReady: () => ready, tls: config.tls });
  registerCalculatorRoutes(http, add, { writeToken: config.writeToken });
  await http.listen({ host: config.host, port: config.httpPort });
  const grpc = await startCalculatorGrpcServer({
    host: config.host,
    port: config.grpcPort,
    add,
    logger,
    metrics: createGrpcServerMetrics(registry),
    tls: config.tls,
    writeToken: config.writeToken,
  });
  ready = true;

  const address = http.server.address();
  const httpPort = typeof address === 'object' && address ? address.port : config.httpPort;
  return {
    grpcPort: grpc.port,
    httpPort,
    shutdownTimeoutMs: config.shutdown.timeoutMs,
    // Readiness first, then a pause while load balancers notice, then the listeners close and wait
    // for the calls in flight; those wait on the recorder, which is drained before the pool ends.
    async stop() {
      ready = false;
      grpc.markNotServing();
      await pause(config.shutdown.delayMs);
      const drainBudgetMs = Math.max(1_000, config.shutdown.timeoutMs - config.shutdown.delayMs - 1_000);
      await Promise.all([grpc.shutdown(drainBudgetMs), http.close()]);
      await recorder.drain();
      await pool.end();
    },
  };
}
