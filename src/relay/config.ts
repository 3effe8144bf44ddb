import { envInteger, type Env } from '../platform/config.ts';
import { DEFAULT_PORTS } from '../platform/ports.ts';
import { envKafkaConfig, envServiceConfig, type KafkaConfig, type ServiceConfig } from '../platform/service/service-config.ts';

export interface RelayConfig extends ServiceConfig, KafkaConfig {
  readonly batchSize: number;
  readonly workers: number;
  readonly pollIntervalMs: number;
  readonly lingerMs: number;
  readonly leaseMs: number;
  readonly maxAttempts: number;
}

export function readRelayConfig(env: Env = process.env): RelayConfig {
  return Object.freeze({
    ...envServiceConfig(env, 'RELAY_HTTP_PORT', DEFAULT_PORTS.relayHttp),
    ...envKafkaConfig(env),
    batchSize: envInteger(env, 'RELAY_BATCH_SIZE', 500, { min: 1, max: 10_000 }),
    workers: envInteger(env, 'RELAY_WORKERS', 2, { min: 1, max: 32 }),
    pollIntervalMs: envInteger(env, 'RELAY_POLL_INTERVAL_MS', 500, { min: 10, max: 60_000 }),
    lingerMs: envInteger(env, 'RELAY_LINGER_MS', 5, { min: 0, max: 1_000 }),
    leaseMs: envInteger(env, 'RELAY_LEASE_MS', 30_000, { min: 1_000, max: 3_600_000 }),
    maxAttempts: envInteger(env, 'RELAY_MAX_ATTEMPTS', 10, { min: 1, max: 1_000 }),
  });
}
