/**
 * Reads settings from the environment once, at start-up. A bad value stops the process with a
 * message that names the variable, instead of surfacing later as a confusing runtime failure.
 */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The process environment, or a stand-in for it in tests. */
export type Env = Record<string, string | undefined>;

export function envString(env: Env, name: string, fallback?: string): string {
  const value = env[name]?.trim();
  if (value) return value;
  if (fallback !== undefined) return fallback;
  throw new ConfigError(`${name} is required`);
}

export function envInteger(env: Env, name: string, fallback: number, limits: { min: number; max: number }): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be a whole number, got ${JSON.stringify(raw)}`);
  const value = Number(raw);
  if (value < limits.min || value > limits.max) {
    throw new ConfigError(`${name} must be between ${limits.min} and ${limits.max}, got ${value}`);
  }
  return value;
}

/** Like envInteger, for a setting whose absence means "decide later" rather than a fixed default. */
export function envOptionalInteger(env: Env, name: string, limits: { min: number; max: number }): number | undefined {
  return env[name]?.trim() ? envInteger(env, name, 0, limits) : undefined;
}

export function envPort(env: Env, name: string, fallback: number): number {
  return envInteger(env, name, fallback, { min: 0, max: 65535 });
}

export function envList(env: Env, name: string, fallback: string): string[] {
  const items = envString(env, name, fallback)
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
  if (items.length === 0) throw new ConfigError(`${name} must list at least one value`);
  return items;
}

export function envDatabaseUrl(env: Env): string {
  return checkedDatabaseUrl('DATABASE_URL', envString(env, 'DATABASE_URL', 'postgres://summa:summa@127.0.0.1:5432/summa'));
}

/** A second database URL (a read replica, say) that is not set unless the deployment has one. */
export function envOptionalDatabaseUrl(env: Env, name: string): string | undefined {
  const url = env[name]?.trim();
  return url ? checkedDatabaseUrl(name, url) : undefined;
}

function checkedDatabaseUrl(name: string, url: string): string {
  if (!/^postgres(ql)?:\/\//.test(url)) throw new ConfigError(`${name} must be a postgres:// connection URL`);
  return url;
}

export function envKafkaBrokers(env: Env): string[] {
  return envList(env, 'KAFKA_BROKERS', '127.0.0.1:9092');
}

export const DEFAULT_TOPIC = 'summa.sums.v1';

export function envTopic(env: Env): string {
  return envTopicName(env, 'KAFKA_TOPIC', DEFAULT_TOPIC);
}

/** A Kafka topic name from `name`: 1 to 249 of [a-zA-Z0-9._-]. */
export function envTopicName(env: Env, name: string, fallback: string): string {
  const topic = envString(env, name, fallback);
  if (!/^[a-zA-Z0-9._-]{1,249}$/.test(topic)) {
    throw new ConfigError(`${name} must be a valid Kafka topic name, got ${JSON.stringify(topic)}`);
  }
  return topic;
}

export function envHost(env: Env): string {
  return envString(env, 'HOST', '127.0.0.1');
}
