import { ConfigError, envInteger, type Env } from '../config.ts';

/** How long rows are kept, and the period one partition covers (see period-partitions.ts). */
export interface RetentionWindow {
  readonly windowSeconds: number;
  readonly periodSeconds: number;
}

const DAY = 86_400;
/** Ten years: a bound that catches a value given in milliseconds by mistake. */
const MAX_SECONDS = 3_650 * DAY;

/**
 * A window and its period from `<prefix>_WINDOW_SECONDS` and `<prefix>_PARTITION_SECONDS`
 * (defaults: 7 days, 1 day). The period may not be longer than the window; rows are kept between
 * one window and one window plus one period.
 */
export function envRetentionWindow(env: Env, prefix: string): RetentionWindow {
  const windowName = `${prefix}_WINDOW_SECONDS`;
  const periodName = `${prefix}_PARTITION_SECONDS`;
  const windowSeconds = envInteger(env, windowName, 7 * DAY, { min: 1, max: MAX_SECONDS });
  const periodSeconds = envInteger(env, periodName, Math.min(DAY, windowSeconds), { min: 1, max: MAX_SECONDS });
  if (periodSeconds > windowSeconds) {
    throw new ConfigError(`${periodName} (${periodSeconds}) must not be longer than ${windowName} (${windowSeconds})`);
  }
  return Object.freeze({ windowSeconds, periodSeconds });
}
