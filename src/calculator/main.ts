import { runService } from '../platform/lifecycle.ts';
import { createLogger } from '../platform/logger.ts';
import { flushTracingOnStop, initTracing } from '../platform/tracing/sdk.ts';
import { startCalculator } from './calculator-service.ts';
import { readCalculatorConfig } from './config.ts';

const logger = createLogger('calculator');
await runService(logger, async () => {
  // Before the service starts, so that its first calls are traced too.
  const tracing = await initTracing('calculator');
  return flushTracingOnStop(await startCalculator(readCalculatorConfig(), logger), tracing);
}, (c) => ({ grpcPort: c.grpcPort, httpPort: c.httpPort }));
