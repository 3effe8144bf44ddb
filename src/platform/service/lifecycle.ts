import type { Logger } from '../logger.ts';

/**
 * Runs `shutdown` once on SIGTERM or SIGINT, then exits. A second signal exits at once, for when
 * a graceful stop hangs.
 */
export function handleShutdownSignals(logger: Logger, shutdown: () => Promise<void>, options: { timeoutMs?: number } = {}): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    if (options.timeoutMs !== undefined) {
      // A stop that hangs (a dependency that never answers) must not keep the process forever.
      setTimeout(() => {
        logger.error({ timeoutMs: options.timeoutMs }, 'graceful shutdown timed out; exiting');
        process.exit(1);
      }, options.timeoutMs).unref();
    }
    shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Started by a parent with an IPC channel (the launcher): stop when that parent is gone.
  if (process.send) process.once('disconnect', () => onSignal('SIGTERM'));
}

/** Logs a start-up failure in one line and exits non-zero, without a stack for configuration errors. */
export function exitOnStartupFailure(logger: Logger, error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof Error && error.name === 'ConfigError') logger.fatal(`configuration error: ${message}`);
  else logger.fatal({ err: error }, `start-up failed: ${message}`);
  process.exit(1);
}

/** The whole of a service's main: start it, log where it listens, stop it cleanly on a signal. */
export async function runService<T extends { stop(): Promise<void>; readonly shutdownTimeoutMs?: number }>(
  logger: Logger,
  start: () => Promise<T>,
  describe: (service: T) => Record<string, unknown>,
): Promise<void> {
  try {
    const service = await start();
    logger.info(describe(service), 'ready');
    // A parent that started us with an IPC channel (npm start) learns it here, whatever the scheme of our listeners.
    process.send?.({ type: 'ready' });
    handleShutdownSignals(logger, () => service.stop(), { timeoutMs: service.shutdownTimeoutMs });
  } catch (error) {
    exitOnStartupFailure(logger, error);
  }
}
