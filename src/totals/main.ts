import { runService } from '../platform/lifecycle.ts';
import { createLogger } from '../platform/logger.ts';
import { readTotalsConfig } from './config.ts';
import { startTotals } from './totals-service.ts';

const logger = createLogger('totals');
await runService(logger, () => startTotals(readTotalsConfig(), logger), (t) => ({ httpPort: t.httpPort }));
