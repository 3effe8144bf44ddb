import { runServiceMain } from '../platform/service/service-main.ts';
import { readTotalsConfig } from './config.ts';
import { startTotals } from './totals-service.ts';

await runServiceMain('totals', readTotalsConfig, startTotals);
