// `npm run chaos -- --minutes N`: a soak run of the chaos harness (see docs/reliability.md).
import { parseArgs } from 'node:util';
import { runChaos } from './harness.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5' },
    'grpc-clients': { type: 'string', default: '4' },
    'http-clients': { type: 'string', default: '2' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help) {
  console.log(`usage: npm run chaos -- [--minutes N] [--grpc-clients N] [--http-clients N] [--keep]

Starts its own PostgreSQL and Kafka in a temporary directory and the three services as processes,
sends Adds from the clients while it kills (-9) and stops (SIGTERM) every component in turn for
N minutes, then checks that every acknowledged request was applied exactly once. Exits 1 otherwise.`);
  process.exit(0);
}

function count(name: string, raw: string, min: number): number {
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) {
    console.error(`--${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}

const result = await runChaos({
  faultsForMs: count('minutes', values.minutes!, 0) * 60_000,
  grpcClients: count('grpc-clients', values['grpc-clients']!, 0),
  httpClients: count('http-clients', values['http-clients']!, 0),
  keepWorkDir: values.keep,
});
process.exit(result.ok ? 0 : 1);
