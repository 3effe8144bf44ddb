import { envInteger, type Env } from '../config.ts';

/** How a service stops on SIGTERM. */
export interface ShutdownSettings {
  /**
   * SHUTDOWN_DELAY_MS: after readiness turns false, how long the listeners keep serving before they
   * close, so that a load balancer that polls /readyz (or the gRPC health check) stops sending
   * first. Requests keep being answered normally during the delay.
   */
  readonly delayMs: number;
  /** SHUTDOWN_TIMEOUT_MS: the whole graceful stop may take this long; then the process exits non-zero. */
  readonly timeoutMs: number;
}

export function envShutdownSettings(env: Env): ShutdownSettings {
  const delayMs = envInteger(env, 'SHUTDOWN_DELAY_MS', 0, { min: 0, max: 300_000 });
  const timeoutMs = envInteger(env, 'SHUTDOWN_TIMEOUT_MS', 30_000, { min: 1_000, max: 600_000 });
  return Object.freeze({ delayMs, timeoutMs: Math.max(timeoutMs, delayMs + 1_000) });
}

export function pause(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
