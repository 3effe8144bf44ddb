import { runService } from '../platform/lifecycle.ts';
import { createLogger } from '../platform/logger.ts';
import { startCalculator } from './calculator-service.ts';
import { readCalculatorConfig } from './config.ts';

const logger = createLogger('calculator');
await runService(logger, () => startCalculator(readCalculatorConfig(), logger), (c) => ({ grpcPort: c.grpcPort, httpPort: c.httpPort }));
