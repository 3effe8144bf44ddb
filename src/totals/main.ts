import { runService } from '../platform/lifecycle.ts';
import { createLogger } from '../platform/logger.ts';
import { flushTracingOnStop, initTracing } from '../platform/tracing/sdk.ts';
import { readTotalsConfig } from './config.ts';
import { startTotals } from './totals-service.ts';

const logger = createLogger('totals');
await runService(logger, async () => {
  // Before the service starts, so that its first calls are traced too.
  const tracing = await initTracing('totals');
  return flushTracingOnStop(await startTotals(readTotalsConfig(), logger), tracing);
}, (t) => ({ httpPort: t.httpPort }));
