import { runServiceMain } from '../platform/service/service-main.ts';
import { startCalculator } from './calculator-service.ts';
import { readCalculatorConfig } from './config.ts';

await runServiceMain('calculator', readCalculatorConfig, startCalculator, (c) => ({ grpcPort: c.grpcPort, httpPort: c.httpPort }));
