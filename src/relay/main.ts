import { runService } from '../platform/lifecycle.ts';
import { createLogger } from '../platform/logger.ts';
import { flushTracingOnStop, initTracing } from '../platform/tracing/sdk.ts';
import { readRelayConfig } from './config.ts';
import { startRelay } from './relay-service.ts';

const logger = createLogger('relay');
await runService(logger, async () => {
  // Before the service starts, so that its first calls are traced too.
  const tracing = await initTracing('relay');
  return flushTracingOnStop(await startRelay(readRelayConfig(), logger), tracing);
}, (r) => ({ httpPort: r.httpPort }));
