import { runServiceMain } from '../platform/service/service-main.ts';
import { readRelayConfig } from './config.ts';
import { startRelay } from './relay-service.ts';

await runServiceMain('relay', readRelayConfig, startRelay);
