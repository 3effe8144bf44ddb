import { ConfigError, envInteger, type Env } from '../platform/config.ts';
import { envRetentionWindow } from '../platform/db/retention-config.ts';
import { DEFAULT_PORTS } from '../platform/ports.ts';
import { envKafkaConfig, envServiceConfig, type KafkaConfig, type ServiceConfig } from '../platform/service/service-config.ts';

export interface RelayConfig extends ServiceConfig, KafkaConfig {
  readonly batchSize: number;
  readonly workers: number;
  readonly pollIntervalMs: number;
  readonly lingerMs: number;
  readonly leaseMs: number;
  readonly maxAttempts: number;
  /** Deleted rows after which the relay vacuums the outbox (0: never), at most every vacuumMinIntervalMs. */
  readonly vacuumEveryRows: number;
  readonly vacuumMinIntervalMs: number;
  /**
   * The totals service's DEDUP_WINDOW_SECONDS (same variable, same default): an outbox event that
   * waits longer than that reaches it too old. The relay warns well before (outbox-age-watch.ts).
   */
  readonly dedupWindowSeconds: number;
}

export function readRelayConfig(env: Env = process.env): RelayConfig {
  const kafka = envKafkaConfig(env);
  const leaseMs = envInteger(env, 'RELAY_LEASE_MS', 30_000, { min: 1_000, max: 3_600_000 });
  return Object.freeze({
    ...envServiceConfig(env, 'RELAY_HTTP_PORT', DEFAULT_PORTS.relayHttp),
    ...kafka,
    publishTimeoutMs: publishTimeoutWithin(leaseMs, kafka.publishTimeoutMs, Boolean(env.KAFKA_PUBLISH_TIMEOUT_MS?.trim())),
    batchSize: envInteger(env, 'RELAY_BATCH_SIZE', 500, { min: 1, max: 10_000 }),
    workers: envInteger(env, 'RELAY_WORKERS', 2, { min: 1, max: 32 }),
    pollIntervalMs: envInteger(env, 'RELAY_POLL_INTERVAL_MS', 500, { min: 10, max: 60_000 }),
    lingerMs: envInteger(env, 'RELAY_LINGER_MS', 5, { min: 0, max: 1_000 }),
    leaseMs,
    maxAttempts: envInteger(env, 'RELAY_MAX_ATTEMPTS', 10, { min: 1, max: 1_000 }),
    vacuumEveryRows: envInteger(env, 'RELAY_VACUUM_EVERY_ROWS', 2_000, { min: 0, max: 100_000_000 }),
    vacuumMinIntervalMs: envInteger(env, 'RELAY_VACUUM_MIN_INTERVAL_MS', 1_000, { min: 0, max: 3_600_000 }),
    dedupWindowSeconds: envRetentionWindow(env, 'DEDUP').windowSeconds,
  });
}

/**
 * A publish that fails releases its events at once for the next try, but only while this relay
 * still holds their lease; one that outlasts the lease leaves them to wait it out, while another
 * relay may already publish them again. So a publish must give up well before the lease ends: left
 * unset, the timeout is shortened to two thirds of a shorter lease (the rest is for the claim and
 * the release); set, it must be shorter than the lease.
 */
function publishTimeoutWithin(leaseMs: number, publishTimeoutMs: number, configured: boolean): number {
  if (!configured) return Math.min(publishTimeoutMs, Math.floor((leaseMs * 2) / 3));
  if (publishTimeoutMs >= leaseMs) {
    throw new ConfigError(
      `KAFKA_PUBLISH_TIMEOUT_MS (${publishTimeoutMs}) must be shorter than RELAY_LEASE_MS (${leaseMs}): ` +
        'a publish that outlasts the lease of its events leaves them to another relay while it still waits',
    );
  }
  return publishTimeoutMs;
}
