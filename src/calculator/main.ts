import { exitOnStartupFailure, handleShutdownSignals } from '../platform/lifecycle.ts';
import { createLogger } from '../platform/logger.ts';
import { startCalculator } from './calculator-service.ts';
import { readCalculatorConfig } from './config.ts';

const logger = createLogger('calculator');
try {
  const calculator = await startCalculator(readCalculatorConfig(), logger);
  logger.info({ grpcPort: calculator.grpcPort, httpPort: calculator.httpPort }, 'calculator ready');
  handleShutdownSignals(logger, () => calculator.stop());
} catch (error) {
  exitOnStartupFailure(logger, error);
}
