import { ConfigError, envInteger, envOptionalDatabaseUrl, envString, envTopic, envTopicName, type Env } from '../platform/config.ts';
import { envRetentionWindow, type RetentionWindow } from '../platform/db/retention-config.ts';
import { DEFAULT_PORTS } from '../platform/ports.ts';
import { envKafkaConfig, envServiceConfig, type KafkaConfig, type ServiceConfig } from '../platform/service/service-config.ts';

export interface TotalsConfig extends ServiceConfig, KafkaConfig {
  readonly groupId: string;
  readonly maxBatchSize: number;
  /** Least time between two offset commits of the consumer while events keep coming. */
  readonly commitIntervalMs: number;
  /** Where records that are not valid events go, with the reason in a header. */
  readonly deadLetterTopic: string;
  /** How long a batch may keep failing before its partitions count as stalled (metric, readiness). */
  readonly stallAfterMs: number;
  /**
   * A read replica of DATABASE_URL that GET /total reads from, when set (the primary stays the
   * fallback, and serves ?consistency=strong).
   */
  readonly readDatabaseUrl: string | undefined;
  /** What the console page at / reaches beyond this service's own database and Kafka. */
  readonly console: ConsoleConfig;
  /**
   * How long applied events are kept to recognise a duplicate delivery (DEDUP_WINDOW_SECONDS,
   * default 7 days), in partitions of DEDUP_PARTITION_SECONDS (default 1 day). It must cover the
   * longest an event may wait in the outbox plus the relay's republish delay; an event older than
   * what is kept is quarantined, never applied blindly.
   */
  readonly dedup: RetentionWindow;
}

export interface ConsoleConfig {
  /**
   * The calculator's HTTP API (http://127.0.0.1:8090), to which the console forwards the Adds sent
   * from its form; undefined: the form answers that no calculator is configured.
   */
  readonly calculatorUrl: string | undefined;
  /**
   * The data folder of an `npm start`, whose run state (run/components.json) names every component:
   * the console shows their health as `summa status` does. Undefined: it shows this service's own.
   */
  readonly runDataDir: string | undefined;
}

/**
 * The consumer's Kafka commits only say where a new member of the group starts reading: each batch
 * already stores its offsets in PostgreSQL with what it applied, and a record read again is skipped
 * by its event id. So under load one commit per this interval does, instead of one per batch.
 */
const COMMIT_INTERVAL_MS = 200;

export function readTotalsConfig(env: Env = process.env): TotalsConfig {
  return Object.freeze({
    ...envServiceConfig(env, 'TOTALS_HTTP_PORT', DEFAULT_PORTS.totalsHttp),
    ...envKafkaConfig(env),
    groupId: envString(env, 'TOTALS_GROUP_ID', 'summa-totals'),
    maxBatchSize: envInteger(env, 'TOTALS_BATCH_SIZE', 500, { min: 1, max: 10_000 }),
    commitIntervalMs: envInteger(env, 'TOTALS_COMMIT_INTERVAL_MS', COMMIT_INTERVAL_MS, { min: 0, max: 60_000 }),
    deadLetterTopic: envDeadLetterTopic(env),
    stallAfterMs: envInteger(env, 'TOTALS_STALL_AFTER_MS', 10_000, { min: 100, max: 3_600_000 }),
    readDatabaseUrl: envOptionalDatabaseUrl(env, 'TOTALS_READ_DATABASE_URL'),
    dedup: envRetentionWindow(env, 'DEDUP'),
    console: Object.freeze({
      calculatorUrl: envOptionalHttpUrl(env, 'TOTALS_CONSOLE_CALCULATOR_URL'),
      runDataDir: env.TOTALS_CONSOLE_DATA_DIR?.trim() || undefined,
    }),
  });
}

function envDeadLetterTopic(env: Env): string {
  const topic = envTopicName(env, 'TOTALS_DEAD_LETTER_TOPIC', `${envTopic(env)}.dlq`);
  if (topic === envTopic(env)) throw new ConfigError('TOTALS_DEAD_LETTER_TOPIC must differ from KAFKA_TOPIC');
  return topic;
}

function envOptionalHttpUrl(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be an http:// or https:// URL, got ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`${name} must be an http:// or https:// URL, got ${JSON.stringify(raw)}`);
  return url.origin;
}
