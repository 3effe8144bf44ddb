import { envDatabaseUrl, envHost, envInteger, envPort, envTopic } from '../platform/config.ts';

export interface CalculatorConfig {
  readonly host: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly databaseUrl: string;
  readonly topic: string;
  readonly maxBatchSize: number;
  readonly maxConcurrentWrites: number;
  readonly maxQueued: number;
  readonly databasePoolSize: number;
}

export function readCalculatorConfig(env: Record<string, string | undefined> = process.env): CalculatorConfig {
  const maxConcurrentWrites = envInteger(env, 'CALCULATOR_CONCURRENT_WRITES', 4, { min: 1, max: 64 });
  return Object.freeze({
    host: envHost(env),
    grpcPort: envPort(env, 'CALCULATOR_GRPC_PORT', 9090),
    httpPort: envPort(env, 'CALCULATOR_HTTP_PORT', 8090),
    databaseUrl: envDatabaseUrl(env),
    topic: envTopic(env),
    maxBatchSize: envInteger(env, 'CALCULATOR_BATCH_SIZE', 500, { min: 1, max: 10_000 }),
    maxConcurrentWrites,
    maxQueued: envInteger(env, 'CALCULATOR_MAX_QUEUED', 20_000, { min: 1, max: 1_000_000 }),
    databasePoolSize: maxConcurrentWrites + 2,
  });
}
