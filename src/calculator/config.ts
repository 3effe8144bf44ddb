import { ConfigError, envInteger, envPort, envString, type Env } from '../platform/config.ts';
import { DEFAULT_PORTS } from '../platform/ports.ts';
import { envWriteToken } from '../platform/security.ts';
import { envServiceConfig, type ServiceConfig } from '../platform/service/service-config.ts';
import { envCaptureSlotLimits, type CaptureSlotLimits } from '../outbox/capture-slot.ts';
import { envRetentionWindow, type RetentionWindow } from '../platform/db/retention-config.ts';

/** Its TLS identity, when set, serves gRPC as well as HTTP. */
export interface CalculatorConfig extends ServiceConfig {
  readonly grpcPort: number;
  readonly maxBatchSize: number;
  readonly maxConcurrentWrites: number;
  readonly maxQueued: number;
  readonly databasePoolSize: number;
  /** Fail fast while PostgreSQL is unreachable or stuck, instead of holding requests. */
  readonly databaseConnectTimeoutMs: number;
  readonly databaseQueryTimeoutMs: number;
  /** Add / POST /v1/sums need this bearer token when set. */
  readonly writeToken: string | undefined;
  /**
   * How events leave the outbox: `poller` (the relay service claims, publishes and deletes the
   * rows) or `debezium` (change data capture reads the inserts off the write-ahead log, so each row
   * is deleted in the transaction that wrote it).
   */
  readonly relayMode: RelayMode;
  /** Under change data capture: the replication slot it watches, and when the slot is a warning. */
  readonly captureSlot: CaptureSlotLimits | undefined;
  /**
   * How long a request id is remembered (IDEMPOTENCY_WINDOW_SECONDS, default 7 days): a retry within
   * it gets the original answer; after it the id is free and a request under it is a new one.
   * Requests are kept in partitions of IDEMPOTENCY_PARTITION_SECONDS (default 1 day).
   */
  readonly idempotency: RetentionWindow;
}

export const RELAY_MODES = ['poller', 'debezium'] as const;
export type RelayMode = (typeof RELAY_MODES)[number];

function envRelayMode(env: Env): RelayMode {
  const value = envString(env, 'RELAY_MODE', 'poller');
  if (!(RELAY_MODES as readonly string[]).includes(value)) {
    throw new ConfigError(`RELAY_MODE must be one of ${RELAY_MODES.join(', ')}, not ${JSON.stringify(value)}`);
  }
  return value as RelayMode;
}

export function readCalculatorConfig(env: Env = process.env): CalculatorConfig {
  const relayMode = envRelayMode(env);
  // One statement in flight by default: requests that arrive meanwhile wait for it and go together
  // in the next, so each WAL flush serves as many as arrived during the previous one. With four in
  // flight the statements carried fewer requests at half load, for 0.19 fsyncs per request from
  // the calculator against 0.12, more CPU and no better latency (BENCHMARKS.md, "Where it falls short").
  const maxConcurrentWrites = envInteger(env, 'CALCULATOR_CONCURRENT_WRITES', 1, { min: 1, max: 64 });
  return Object.freeze({
    ...envServiceConfig(env, 'CALCULATOR_HTTP_PORT', DEFAULT_PORTS.calculatorHttp),
    grpcPort: envPort(env, 'CALCULATOR_GRPC_PORT', DEFAULT_PORTS.calculatorGrpc),
    maxBatchSize: envInteger(env, 'CALCULATOR_BATCH_SIZE', 500, { min: 1, max: 10_000 }),
    maxConcurrentWrites,
    maxQueued: envInteger(env, 'CALCULATOR_MAX_QUEUED', 20_000, { min: 1, max: 1_000_000 }),
    databasePoolSize: maxConcurrentWrites + 2,
    databaseConnectTimeoutMs: envInteger(env, 'CALCULATOR_DB_CONNECT_TIMEOUT_MS', 2_000, { min: 100, max: 60_000 }),
    databaseQueryTimeoutMs: envInteger(env, 'CALCULATOR_DB_QUERY_TIMEOUT_MS', 5_000, { min: 100, max: 300_000 }),
    writeToken: envWriteToken(env),
    relayMode,
    captureSlot: relayMode === 'debezium' ? envCaptureSlotLimits(env) : undefined,
    idempotency: envRetentionWindow(env, 'IDEMPOTENCY'),
  });
}
