import { envDatabaseUrl, envHost, envInteger, envPort, envTopic } from '../platform/config.ts';
import { DEFAULT_PORTS } from '../platform/ports.ts';
import { envTlsIdentity, envWriteToken, type TlsIdentity } from '../platform/security.ts';
import { envShutdownSettings, type ShutdownSettings } from '../platform/service/shutdown.ts';

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
  /** Fail fast while PostgreSQL is unreachable or stuck, instead of holding requests. */
  readonly databaseConnectTimeoutMs: number;
  readonly databaseQueryTimeoutMs: number;
  readonly shutdown: ShutdownSettings;
  /** Serves gRPC and HTTP over TLS when set. */
  readonly tls: TlsIdentity | undefined;
  /** Add / POST /v1/sums need this bearer token when set. */
  readonly writeToken: string | undefined;
}

export function readCalculatorConfig(env: Record<string, string | undefined> = process.env): CalculatorConfig {
  const maxConcurrentWrites = envInteger(env, 'CALCULATOR_CONCURRENT_WRITES', 4, { min: 1, max: 64 });
  return Object.freeze({
    host: envHost(env),
    grpcPort: envPort(env, 'CALCULATOR_GRPC_PORT', DEFAULT_PORTS.calculatorGrpc),
    httpPort: envPort(env, 'CALCULATOR_HTTP_PORT', DEFAULT_PORTS.calculatorHttp),
    databaseUrl: envDatabaseUrl(env),
    topic: envTopic(env),
    maxBatchSize: envInteger(env, 'CALCULATOR_BATCH_SIZE', 500, { min: 1, max: 10_000 }),
    maxConcurrentWrites,
    maxQueued: envInteger(env, 'CALCULATOR_MAX_QUEUED', 20_000, { min: 1, max: 1_000_000 }),
    databasePoolSize: maxConcurrentWrites + 2,
    databaseConnectTimeoutMs: envInteger(env, 'CALCULATOR_DB_CONNECT_TIMEOUT_MS', 2_000, { min: 100, max: 60_000 }),
    databaseQueryTimeoutMs: envInteger(env, 'CALCULATOR_DB_QUERY_TIMEOUT_MS', 5_000, { min: 100, max: 300_000 }),
    shutdown: envShutdownSettings(env),
    tls: envTlsIdentity(env),
    writeToken: envWriteToken(env),
  });
}
