import { createLogger, type Logger } from '../logger.ts';
import { flushTracingOnStop, initTracing } from '../tracing/sdk.ts';
import { runService } from './lifecycle.ts';
import type { RunningService } from './service-host.ts';

/**
 * The whole of a service's main.ts: its logger and tracing, its configuration read from the
 * environment, the service started, and stopped on a signal with its last spans flushed.
 */
export async function runServiceMain<Config, Running extends RunningService>(
  name: string,
  readConfig: () => Config,
  start: (config: Config, logger: Logger) => Promise<Running>,
  describe: (service: Running) => Record<string, unknown> = (service) => ({ httpPort: service.httpPort }),
): Promise<void> {
  const logger = createLogger(name);
  await runService(logger, async () => {
    // Before the service starts, so that its first calls are traced too.
    const tracing = await initTracing(name);
    return flushTracingOnStop(await start(readConfig(), logger), tracing);
  }, describe);
}
