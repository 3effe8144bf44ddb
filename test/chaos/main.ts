// `npm run chaos -- [--cluster] --minutes N`: a soak run of the chaos harness (see docs/reliability.md).
import { parseArgs } from 'node:util';
import { runChaos } from './harness.ts';
import { CLUSTER, TWO_INSTANCES } from './topology.ts';
import { SHORT_WINDOWS } from './window-audit.ts';

const { values } = parseArgs({
  options: {
    cluster: { type: 'boolean', default: false },
    minutes: { type: 'string', default: '5' },
    'grpc-clients': { type: 'string', default: '4' },
    'http-clients': { type: 'string', default: '2' },
    'twin-pairs': { type: 'string', default: '1' },
    'conflict-clients': { type: 'string', default: '1' },
    keep: { type: 'boolean', default: false },
    windows: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help) {
  console.log(`usage: npm run chaos -- [--cluster] [--minutes N] [--grpc-clients N] [--http-clients N]
                        [--twin-pairs N] [--conflict-clients N] [--windows] [--keep]

Starts its own PostgreSQL and Kafka in a temporary directory and two instances of each of the three
services as processes, sends Adds from the clients (spread over both calculators; twin pairs send
each request to both at once; conflict clients send other numbers under taken ids) while it kills
(-9) and stops (SIGTERM) every instance, the broker and the database in turn for N minutes, then
checks that every acknowledged request was applied exactly once and no refused one was counted.
Exits 1 otherwise.

--cluster runs the same rounds on the topology of \`npm start -- --cluster\`: 3 Kafka brokers
(SASL_SSL, one at a time faulted so that 2 of 3 stay up), PostgreSQL primary and streaming replica
(the totals read from it; both faulted), 3 calculators behind nginx (the clients send through it),
2 relays and 3 totals consumers in one group.

--windows gives the services windows of seconds (requests kept 6 s in partitions of 2 s, applied
events 45 s in partitions of 2 s, relay lease 3 s), so that partitions are switched and dropped
all through the faults; the run is then audited on logs of every row written, since the rows are
gone by the end (test/chaos/window-audit.ts).`);
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
  topology: values.cluster ? CLUSTER : TWO_INSTANCES,
  // Each of three consumers gets a third of the load, so its commits are further apart: more time to aim.
  aimForMs: values.cluster ? 45_000 : 20_000,
  faultsForMs: count('minutes', values.minutes!, 0) * 60_000,
  grpcClients: count('grpc-clients', values['grpc-clients']!, 0),
  httpClients: count('http-clients', values['http-clients']!, 0),
  twinPairs: count('twin-pairs', values['twin-pairs']!, 0),
  conflictClients: count('conflict-clients', values['conflict-clients']!, 0),
  keepWorkDir: values.keep,
  windows: values.windows ? SHORT_WINDOWS : undefined,
});
process.exit(result.ok ? 0 : 1);
