import { fileURLToPath } from 'node:url';
import { migrate } from '../platform/db/migrate.ts';
import { createPool } from '../platform/db/pool.ts';
import { createHttpServer } from '../platform/http/server.ts';
import type { Logger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import type { CalculatorConfig } from './config.ts';
import { startCalculatorGrpcServer } from './grpc-server.ts';
import { registerCalculatorRoutes } from './http-routes.ts';
import { createCalculatorMetrics } from './metrics.ts';
import { SumRecorder } from './sum-recorder.ts';

export const CALCULATOR_MIGRATIONS = fileURLToPath(new URL('./migrations', import.meta.url));

export interface RunningCalculator {
  readonly grpcPort: number;
  readonly httpPort: number;
  stop(): Promise<void>;
}

/** The calculator: gRPC and HTTP in front of one SumRecorder. */
export async function startCalculator(config: CalculatorConfig, logger: Logger): Promise<RunningCalculator> {
  const pool = createPool(config.databaseUrl, { max: config.databasePoolSize, applicationName: 'summa-calculator' });
  await migrate(pool, 'calculator', CALCULATOR_MIGRATIONS);

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
  const http = createHttpServer({ logger, registry, isReady: () => ready });
  registerCalculatorRoutes(http, add);
  await http.listen({ host: config.host, port: config.httpPort });
  const grpc = await startCalculatorGrpcServer({ host: config.host, port: config.grpcPort, add, logger });
  ready = true;

  const address = http.server.address();
  const httpPort = typeof address === 'object' && address ? address.port : config.httpPort;
  return {
    grpcPort: grpc.port,
    httpPort,
    async stop() {
      ready = false;
      await Promise.all([grpc.shutdown(), http.close()]);
      await recorder.drain();
      await pool.end();
    },
  };
}
