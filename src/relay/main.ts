import { runService } from '../platform/lifecycle.ts';
import { createLogger } from '../platform/logger.ts';
import { readRelayConfig } from './config.ts';
import { startRelay } from './relay-service.ts';

const logger = createLogger('relay');
await runService(logger, () => startRelay(readRelayConfig(), logger), (r) => ({ httpPort: r.httpPort }));
