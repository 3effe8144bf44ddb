import { backoffDelay, sleep } from './backoff.ts';
import { ConfigError } from './config.ts';
import type { Logger } from './logger.ts';

/**
 * Retries `attempt` with exponential backoff until it succeeds or `shouldStop` says so, so that a
 * service can start before its dependencies and wait for them instead of crashing. A ConfigError is
 * thrown at once: a bad setting does not get better by waiting.
 */
export async function retryUntilSuccess<T>(
  what: string,
  attempt: () => Promise<T>,
  logger: Logger,
  options: { initialDelayMs?: number; maxDelayMs?: number; shouldStop?: () => boolean } = {},
): Promise<T> {
  for (let tries = 1; ; tries += 1) {
    try {
      return await attempt();
    } catch (error) {
      if (error instanceof ConfigError || options.shouldStop?.()) throw error;
      const delayMs = backoffDelay(tries - 1, options.initialDelayMs ?? 250, options.maxDelayMs ?? 5_000);
      logger.warn({ err: error, tries, retryInMs: delayMs }, `${what} failed; retrying`);
      await sleep(delayMs);
    }
  }
}
