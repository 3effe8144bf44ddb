import type { Logger } from './logger.ts';

/**
 * Retries `attempt` with exponential backoff until it succeeds or `shouldStop` says so, so that a
 * service can start before its dependencies and wait for them instead of crashing.
 */
export async function retryUntilSuccess<T>(
  what: string,
  attempt: () => Promise<T>,
  logger: Logger,
  options: { initialDelayMs?: number; maxDelayMs?: number; shouldStop?: () => boolean } = {},
): Promise<T> {
  let delayMs = options.initialDelayMs ?? 250;
  for (let tries = 1; ; tries += 1) {
    try {
      return await attempt();
    } catch (error) {
      if (options.shouldStop?.()) throw error;
      logger.warn({ err: error, tries, retryInMs: delayMs }, `${what} failed; retrying`);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      delayMs = Math.min(delayMs * 2, options.maxDelayMs ?? 5_000);
    }
  }
}
