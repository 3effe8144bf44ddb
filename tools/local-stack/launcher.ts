// `npm start`: the whole system on one machine. Starts embedded PostgreSQL and a single-node
// Kafka broker (unless DATABASE_URL / KAFKA_BROKERS point at existing ones), then the calculator,
// the relay and the totals service as separate processes, restarting any that dies.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startKafkaBroker, type KafkaBroker } from './kafka-broker.ts';
import { startPostgresServer, type PostgresServer } from './postgres-server.ts';
import { envPort } from '../../src/platform/config.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { DEFAULT_PORTS } from '../../src/platform/ports.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const logger = createLogger('launcher');
const env = process.env;
const dataDir = path.resolve(env.SUMMA_DATA_DIR ?? path.join(root, '.data'));

interface ServiceSpec {
  name: string;
  entry: string;
}

const scheme = env.TLS_CERT_FILE ? 'https' : 'http';
const ports = {
  grpc: envPort(env, 'CALCULATOR_GRPC_PORT', DEFAULT_PORTS.calculatorGrpc),
  calculatorHttp: envPort(env, 'CALCULATOR_HTTP_PORT', DEFAULT_PORTS.calculatorHttp),
  relayHttp: envPort(env, 'RELAY_HTTP_PORT', DEFAULT_PORTS.relayHttp),
  totalsHttp: envPort(env, 'TOTALS_HTTP_PORT', DEFAULT_PORTS.totalsHttp),
};

const services: ServiceSpec[] = [
  { name: 'calculator', entry: 'src/calculator/main.ts' },
  { name: 'relay', entry: 'src/relay/main.ts' },
  { name: 'totals', entry: 'src/totals/main.ts' },
];

let stopping = false;
let postgres: PostgresServer | undefined;
let kafka: KafkaBroker | undefined;
const children = new Map<string, ChildProcess>();
/** Set once every service was ready: from then on a service that exits is restarted. */
let started = false;
const STARTUP_TIMEOUT_MS = 120_000;

async function main(): Promise<void> {
  let databaseUrl = env.DATABASE_URL;
  if (!databaseUrl) {
    const port = envPort(env, 'SUMMA_POSTGRES_PORT', 55432);
    logger.info({ port, dataDir: path.join(dataDir, 'postgres') }, 'starting embedded PostgreSQL');
    postgres = await startPostgresServer({ dataDir: path.join(dataDir, 'postgres'), port });
    await postgres.ensureDatabase('summa');
    databaseUrl = postgres.url('summa');
  }
  let brokers = env.KAFKA_BROKERS;
  if (!brokers) {
    const port = envPort(env, 'SUMMA_KAFKA_PORT', 9092);
    logger.info({ port, dataDir: path.join(dataDir, 'kafka') }, 'starting Kafka (first start resolves its jars with Maven)');
    kafka = await startKafkaBroker({ dataDir: path.join(dataDir, 'kafka'), port, controllerPort: envPort(env, 'SUMMA_KAFKA_CONTROLLER_PORT', 9093) });
    brokers = kafka.brokers;
  }
  const serviceEnv = { ...env, DATABASE_URL: databaseUrl, KAFKA_BROKERS: brokers };
  await withTimeout(
    Promise.all(services.map((service) => startService(service, serviceEnv))),
    STARTUP_TIMEOUT_MS,
    `the services did not become ready within ${STARTUP_TIMEOUT_MS / 1000} s`,
  );
  started = true;

  console.log(`
Summa is running.
  Calculator gRPC   127.0.0.1:${ports.grpc}      (summa.v1.CalculatorService/Add, reflection on)
  Calculator HTTP   ${scheme}://127.0.0.1:${ports.calculatorHttp}/v1/sums
  Totals REST       ${scheme}://127.0.0.1:${ports.totalsHttp}/total
  Metrics           :${ports.calculatorHttp}/metrics  :${ports.relayHttp}/metrics  :${ports.totalsHttp}/metrics
  PostgreSQL        ${redact(databaseUrl)}
  Kafka             ${brokers}
Try: npx summa add 5 10 && npx summa total
Press Ctrl-C to stop.
`);
}

/**
 * Starts a service's process; resolves when it says it is ready (over the IPC channel), rejects if
 * it exits first. Once the system has started, a process that exits is replaced.
 */
function startService(service: ServiceSpec, serviceEnv: NodeJS.ProcessEnv): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, service.entry)], {
    cwd: root,
    env: serviceEnv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.set(service.name, child);
  child.on('exit', (code, signal) => {
    children.delete(service.name);
    // During start-up the failure stops everything (below); restarting would only fail again.
    if (stopping || !started) return;
    logger.error({ service: service.name, code, signal }, 'service exited; restarting it in 1s');
    setTimeout(() => !stopping && startService(service, serviceEnv).catch(() => {}), 1_000);
  });
  return new Promise((resolve, reject) => {
    child.on('message', (message: { type?: string }) => message?.type === 'ready' && resolve());
    child.once('exit', (code, signal) =>
      reject(new Error(`${service.name} exited during start-up (${signal ?? `exit code ${code}`}); see its log above`)),
    );
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function stop(): Promise<void> {
  stopping = true;
  await Promise.all(
    [...children.values()].map(
      (child) =>
        new Promise<void>((resolve) => {
          const force = setTimeout(() => child.kill('SIGKILL'), 20_000);
          child.once('exit', () => {
            clearTimeout(force);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
  await kafka?.stop();
  await postgres?.stop();
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

let signalled = false;
for (const signal of ['SIGINT', 'SIGTERM', 'disconnect'] as const) {
  process.on(signal, () => {
    if (signalled) process.exit(1);
    signalled = true;
    logger.info({ signal }, 'stopping Summa');
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'stopping failed');
        process.exit(1);
      },
    );
  });
}

main().catch(async (error: unknown) => {
  logger.fatal({ err: error }, `Summa did not start: ${(error as Error).message}`);
  await stop().catch(() => {});
  process.exit(1);
});
