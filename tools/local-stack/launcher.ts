// `npm start`: the whole system on one machine. Starts embedded PostgreSQL and Kafka (unless
// DATABASE_URL / KAFKA_BROKERS point at existing ones), then the services as processes of their own,
// restarting any that dies. `npm start -- --cluster` runs the scaled-out topology (topology.ts)
// behind nginx. What runs where is kept in <data dir>/run/components.json for `summa status`.
import { readFileSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startKafkaBroker, type KafkaBroker } from './kafka-broker.ts';
import { startKafkaCluster, type KafkaCluster, type KafkaUser } from './kafka-cluster.ts';
import { outboxConnectorConfig, startKafkaConnect, type ConnectorState, type KafkaConnect } from './kafka-connect.ts';
import pg from 'pg';
import { ensureOutboxPublication } from '../../src/outbox/outbox-capture.ts';
import { RELAY_MODES, type RelayMode } from '../../src/calculator/config.ts';
import { startNginxServer } from './nginx-server.ts';
import { startPostgresReplica, type PostgresReplica } from './postgres-replica.ts';
import { startPostgresServer, type PostgresServer } from './postgres-server.ts';
import { startServiceProcess } from './service-process.ts';
import { Supervisor } from './supervisor.ts';
import { envPortOffset, planTopology, assertDistinctPorts, type ServiceInstance, type Topology } from './topology.ts';
import { ensureTool } from '../lib/tools.ts';
import { repoRoot } from '../lib/paths.ts';
import { readRunState, runStateFile, writeRunState, type RunComponent, type RunState } from '../../src/cli/run-state.ts';
import { ConfigError, envInteger, envTopic, envTopicName } from '../../src/platform/config.ts';
import { createLogger } from '../../src/platform/logger.ts';

const USAGE = `usage: npm start [-- [--cluster] [--relay poller|debezium] [--port-offset N]]

  (no option)        one of each part: PostgreSQL, a Kafka broker, a calculator, a relay, a totals service
  --cluster          3 calculators and 3 totals services behind nginx, 2 relays (issue #11's topology)
  --relay debezium   change data capture instead of the relay service: Kafka Connect with Debezium's
                     PostgreSQL connector (also RELAY_MODE=debezium; not with --cluster yet)
  --port-offset N    adds N to every default port (also SUMMA_PORT_OFFSET), to run a second system beside one
  -h, --help         this text

Settings come from the environment: SUMMA_DATA_DIR, DATABASE_URL, KAFKA_BROKERS, *_PORT (see README.md).`;

interface CommandLine {
  cluster: boolean;
  relay?: string;
  portOffset?: string;
}

function parseCommandLine(args: string[]): CommandLine {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: { cluster: { type: 'boolean' }, relay: { type: 'string' }, 'port-offset': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }).values;
  } catch (error) {
    console.error(`npm start: ${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (parsed.help) {
    console.log(USAGE);
    process.exit(0);
  }
  return { cluster: parsed.cluster ?? false, relay: parsed.relay, portOffset: parsed['port-offset'] };
}

const commandLine = parseCommandLine(process.argv.slice(2));
const logger = createLogger('launcher');
const env: NodeJS.ProcessEnv = { ...process.env };
if (commandLine.portOffset !== undefined) {
  try {
    envPortOffset({ SUMMA_PORT_OFFSET: commandLine.portOffset });
  } catch (error) {
    console.error(`npm start: --port-offset: ${(error as Error).message.replace(/^SUMMA_PORT_OFFSET /, '')}\n\n${USAGE}`);
    process.exit(2);
  }
  env.SUMMA_PORT_OFFSET = commandLine.portOffset;
}
if (commandLine.relay !== undefined) env.RELAY_MODE = commandLine.relay;
const relayMode = (env.RELAY_MODE?.trim() || 'poller') as RelayMode;
if (!RELAY_MODES.includes(relayMode)) {
  console.error(`npm start: --relay (RELAY_MODE) must be one of ${RELAY_MODES.join(', ')}, not ${JSON.stringify(relayMode)}\n\n${USAGE}`);
  process.exit(2);
}
const capture = relayMode === 'debezium';
if (capture && commandLine.cluster) {
  console.error('npm start: --relay debezium runs with the single topology only for now; leave out --cluster');
  process.exit(2);
}
/** The Debezium connector's name in Kafka Connect, and its replication slot's. */
const CONNECTOR = 'summa-outbox';
const SLOT = 'summa_outbox';
const dataDir = path.resolve(env.SUMMA_DATA_DIR ?? path.join(repoRoot, '.data'));
const scheme = env.TLS_CERT_FILE ? 'https' : 'http';
const STARTUP_TIMEOUT_MS = 120_000;

let topology: Topology;
try {
  topology = planTopology(commandLine.cluster ? 'cluster' : 'single', env);
  assertDistinctPorts(topology);
  if (topology.nginx && env.TLS_CERT_FILE) {
    throw new ConfigError('TLS_CERT_FILE is set, but in --cluster mode nginx does not terminate TLS yet; unset it, or run without --cluster');
  }
} catch (error) {
  console.error(`npm start: ${(error as Error).message}`);
  process.exit(2);
}
const clustered = topology.name === 'cluster';
/**
 * Each service writes a log file of its own (what `summa logs` reads). One of each also shows on the
 * launcher's stdout; in the cluster, nine processes on one stdout could not be read.
 */
const logDir = path.join(dataDir, 'logs');
const logFileOf = (name: string) => path.join(logDir, `${name}.log`);

let postgres: PostgresServer | undefined;
let replica: PostgresReplica | undefined;
let kafka: KafkaBroker | undefined;
let kafkaCluster: KafkaCluster | undefined;
let connect: KafkaConnect | undefined;
let connectorState: ConnectorState | undefined;
let databaseUrl = '';
/** Cluster mode: where the totals services read GET /total (the streaming replica). */
let replicaDatabaseUrl: string | undefined;
let kafkaBrokers = '';
let stopping = false;
const startedAt = new Date().toISOString();
/** Components that are not supervised processes of the launcher (PostgreSQL, Kafka), for the run state. */
const infrastructure: RunComponent[] = [];
const supervisor = new Supervisor({ logger, onChange: () => saveRunState() });

async function main(): Promise<void> {
  await refuseSecondLauncher();
  // Fetched first: a missing nginx should stop the start before anything else has run.
  const nginxBinary = topology.nginx ? await ensureNginx() : undefined;
  await mkdir(logDir, { recursive: true });
  await Promise.all(topology.services.map((service) => rotate(logFileOf(service.name))));

  databaseUrl = env.DATABASE_URL ?? '';
  if (!databaseUrl) {
    const postgresDir = path.join(dataDir, 'postgres');
    logger.info({ port: topology.postgres.port, dataDir: postgresDir }, 'starting embedded PostgreSQL');
    postgres = await startPostgresServer({ dataDir: postgresDir, port: topology.postgres.port });
    await postgres.ensureDatabase('summa');
    databaseUrl = postgres.url('summa');
    infrastructure.push({
      name: 'postgres-primary',
      role: 'postgres-primary',
      pid: await postgres.pid(),
      ports: [topology.postgres.port],
      logFile: path.join(postgresDir, 'postgres.log'),
    });
    if (topology.postgres.replicaPort !== undefined) {
      const replicaDir = path.join(dataDir, 'postgres-replica');
      logger.info({ port: topology.postgres.replicaPort, dataDir: replicaDir }, 'starting the streaming replica (the first start copies the primary)');
      replica = await startPostgresReplica({ primary: postgres, dataDir: replicaDir, port: topology.postgres.replicaPort });
      replicaDatabaseUrl = replica.url('summa');
      infrastructure.push({
        name: 'postgres-replica',
        role: 'postgres-replica',
        pid: await replica.pid(),
        ports: [topology.postgres.replicaPort],
        logFile: path.join(replicaDir, 'postgres.log'),
      });
    }
  }
  kafkaBrokers = env.KAFKA_BROKERS ?? '';
  if (!kafkaBrokers && clustered) await startClusterKafka();
  else if (!kafkaBrokers) {
    const kafkaDir = path.join(dataDir, 'kafka');
    const [broker] = topology.kafka;
    logger.info({ port: broker!.port, dataDir: kafkaDir }, 'starting Kafka (first start resolves its jars with Maven)');
    kafka = await startKafkaBroker({ dataDir: kafkaDir, port: broker!.port, controllerPort: broker!.controllerPort });
    kafkaBrokers = kafka.brokers;
    infrastructure.push({
      name: `kafka-${broker!.nodeId}`,
      role: 'kafka-broker',
      pid: kafka.pid,
      ports: [kafka.port, kafka.controllerPort],
      brokerId: broker!.nodeId,
      logFile: kafka.logFile,
    });
  }

  const serviceEnv = {
    ...env,
    DATABASE_URL: databaseUrl,
    KAFKA_BROKERS: kafkaBrokers,
    ...(replicaDatabaseUrl && !env.TOTALS_READ_DATABASE_URL ? { TOTALS_READ_DATABASE_URL: replicaDatabaseUrl } : {}),
    // The console (totals, /) forwards its Adds to the calculators' entry point and shows every
    // component's health from this run's state.
    TOTALS_CONSOLE_CALCULATOR_URL: env.TOTALS_CONSOLE_CALCULATOR_URL ?? `${scheme}://127.0.0.1:${topology.entryPoints.calculatorHttp}`,
    TOTALS_CONSOLE_DATA_DIR: env.TOTALS_CONSOLE_DATA_DIR ?? dataDir,
  };
  await withTimeout(
    Promise.all(runningServices().map((service) => supervisor.start(serviceProcess(service, serviceEnv)))),
    STARTUP_TIMEOUT_MS,
    `the services did not become ready within ${STARTUP_TIMEOUT_MS / 1000} s`,
  );
  // After the services: the calculator has migrated the outbox, and the totals service made the topic.
  if (capture) await startCapture();
  if (topology.nginx && nginxBinary) {
    const nginx = topology.nginx;
    await supervisor.start({
      name: 'nginx',
      start: () =>
        startNginxServer({
          dataDir: path.join(dataDir, 'nginx'),
          binary: nginxBinary,
          proxies: [
            { name: 'calculators_grpc', listenPort: nginx.grpcPort, protocol: 'grpc', upstreamPorts: nginx.calculatorGrpcPorts },
            { name: 'calculators_http', listenPort: nginx.httpPort, protocol: 'http', upstreamPorts: nginx.calculatorHttpPorts },
            // GET /total is safe to resend: a totals service that is starting or stalled (503) is skipped.
            { name: 'totals_http', listenPort: nginx.totalsPort, protocol: 'http', upstreamPorts: nginx.totalsHttpPorts, retryOnStatus: [502, 503, 504] },
          ],
        }),
    });
  }
  supervisor.restartOnExit();
  await saveRunState();
  console.log(banner());
}

/** Under change data capture Kafka Connect publishes the outbox: no relay service runs. */
function runningServices(): ServiceInstance[] {
  return topology.services.filter((service) => !(capture && service.role === 'relay'));
}

/**
 * Change data capture: the outbox's publication, a Kafka Connect worker (its state in Kafka, its
 * files in <data dir>/kafka-connect) and the Debezium connector, registered (or its config updated)
 * and RUNNING.
 */
async function startCapture(): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await ensureOutboxPublication(client);
  } finally {
    await client.end();
  }
  const connectDir = path.join(dataDir, 'kafka-connect');
  logger.info({ dataDir: connectDir }, 'starting Kafka Connect with Debezium (first start resolves its jars with Maven; the JVM takes a minute)');
  connect = await startKafkaConnect({ dataDir: connectDir, brokers: kafkaBrokers });
  infrastructure.push({
    name: 'kafka-connect',
    role: 'kafka-connect',
    pid: connect.pid,
    ports: [connect.restPort],
    // summa status reads the connector's and its task's state here.
    healthUrl: `${connect.restUrl}/connectors/${CONNECTOR}/status`,
    logFile: connect.logFile,
  });
  const url = new URL(databaseUrl);
  await connect.putConnector(
    CONNECTOR,
    outboxConnectorConfig({
      database: {
        host: url.hostname,
        port: Number(url.port || 5432),
        user: decodeURIComponent(url.username),
        password: decodeURIComponent(url.password),
        name: url.pathname.slice(1),
      },
      slotName: SLOT,
    }),
  );
  connectorState = await connect.waitUntilRunning(CONNECTOR);
}

function serviceProcess(service: ServiceInstance, serviceEnv: NodeJS.ProcessEnv) {
  return {
    name: service.name,
    start: () =>
      startServiceProcess({
        name: service.name,
        entry: service.entry,
        env: { ...serviceEnv, ...kafkaEnvOf(service), ...service.env },
        output: clustered ? logFileOf(service.name) : { tee: logFileOf(service.name) },
      }),
  };
}

/**
 * The 3-node KRaft cluster with SASL_SSL listeners. The admin creates the topics and grants each
 * service's user what it needs (only the relays' user may write the event topic), so the services
 * find their topics in place and cannot create others.
 */
async function startClusterKafka(): Promise<void> {
  const kafkaDir = path.join(dataDir, 'kafka-cluster');
  logger.info({ ports: topology.kafka.map((node) => node.port), dataDir: kafkaDir }, 'starting the 3-node Kafka cluster (first start resolves its jars with Maven)');
  kafkaCluster = await startKafkaCluster({
    dataDir: kafkaDir,
    nodes: topology.kafka.length,
    ports: topology.kafka.map((node) => node.port),
    controllerPorts: topology.kafka.map((node) => node.controllerPort),
    security: 'sasl_ssl',
  });
  const topic = envTopic(env);
  await kafkaCluster.setUpServiceAccess({
    topic,
    deadLetterTopic: envTopicName(env, 'TOTALS_DEAD_LETTER_TOPIC', `${topic}.dlq`),
    groupId: consumerGroup(),
    partitions: envInteger(env, 'KAFKA_TOPIC_PARTITIONS', 6, { min: 1, max: 1000 }),
  });
  kafkaBrokers = kafkaCluster.brokers;
  for (const node of kafkaCluster.nodes) {
    infrastructure.push({
      name: `kafka-${node.id}`,
      role: 'kafka-broker',
      pid: node.pid(),
      ports: [node.port, node.controllerPort],
      brokerId: node.id,
      logFile: node.logFile,
    });
  }
}

/** In the cluster each service talks to Kafka as its own user; the calculator does not talk to Kafka. */
function kafkaEnvOf(service: ServiceInstance): Record<string, string> {
  if (!kafkaCluster) return {};
  const users: Partial<Record<ServiceInstance['role'], KafkaUser>> = { relay: 'summa-relay', totals: 'summa-totals' };
  const user = users[service.role];
  return user ? kafkaCluster.clientEnv(user) : {};
}

function consumerGroup(): string {
  return env.TOTALS_GROUP_ID?.trim() || 'summa-totals';
}

async function ensureNginx(): Promise<string> {
  const binary = await ensureTool('nginx');
  if (!binary) throw new Error('--cluster needs nginx, and tools/setup/30-nginx.sh could not provide it (its reason is above)');
  return binary;
}

/** A second launcher on the same data would fight the first over its ports and files. */
async function refuseSecondLauncher(): Promise<void> {
  const previous = await readRunState(dataDir).catch(() => null);
  if (previous && previous.launcherPid !== process.pid && isLauncher(previous.launcherPid)) {
    throw new Error(
      `Summa is already running from ${dataDir} (launcher pid ${previous.launcherPid}); stop it, or give this one a data folder of its own (SUMMA_DATA_DIR)`,
    );
  }
}

function isLauncher(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('tools/local-stack/launcher.ts');
  } catch {
    return false;
  }
}

async function rotate(file: string): Promise<void> {
  await rename(file, `${file}.1`).catch(() => {});
}

function runState(): RunState {
  const services: RunComponent[] = runningServices().map((service) => ({
    name: service.name,
    role: service.role,
    pid: supervisor.pid(service.name),
    ports: service.ports,
    healthUrl: `${scheme}://127.0.0.1:${service.httpPort}/readyz`,
    logFile: logFileOf(service.name),
  }));
  const nginx: RunComponent[] = topology.nginx
    ? [
        {
          name: 'nginx',
          role: 'nginx',
          pid: supervisor.pid('nginx'),
          ports: [topology.nginx.grpcPort, topology.nginx.httpPort, topology.nginx.totalsPort],
          logFile: path.join(dataDir, 'nginx', 'error.log'),
        },
      ]
    : [];
  return {
    topology: topology.name,
    launcherPid: process.pid,
    startedAt,
    databaseUrl,
    ...(replicaDatabaseUrl ? { replicaDatabaseUrl } : {}),
    kafkaBrokers,
    ...(kafkaCluster ? { kafkaAdmin: kafkaCluster.admin } : {}),
    consumerGroup: consumerGroup(),
    topic: envTopic(env),
    ...(capture ? { captureSlot: SLOT } : {}),
    components: [...infrastructure, ...services, ...nginx],
  };
}

/** Writes follow one another, so the file always ends with the latest state. */
let runStateWrites: Promise<void> = Promise.resolve();
function saveRunState(): Promise<void> {
  // Nothing to say before the data is up, nor once the launcher is going away.
  if (!databaseUrl || stopping) return runStateWrites;
  const state = runState();
  runStateWrites = runStateWrites
    .then(() => writeRunState(dataDir, state))
    .catch((error: unknown) => logger.warn({ err: error, file: runStateFile(dataDir) }, 'could not write the run state'));
  return runStateWrites;
}

function banner(): string {
  const { entryPoints } = topology;
  const ports = (list: number[]) => list.map((port) => `:${port}`).join(' ');
  const services = (role: string) => topology.services.filter((service) => service.role === role);
  const lines = ['', `Summa is running${clustered ? ' (cluster)' : ''}.`, `  Console           ${scheme}://127.0.0.1:${entryPoints.totalsHttp}/`];
  if (topology.nginx) {
    const nginx = topology.nginx;
    lines.push(
      `  Calculator gRPC   127.0.0.1:${entryPoints.grpc}      (nginx over ${ports(nginx.calculatorGrpcPorts)}; summa.v1.CalculatorService/Add)`,
      `  Calculator HTTP   ${scheme}://127.0.0.1:${entryPoints.calculatorHttp}/v1/sums   (nginx over ${ports(nginx.calculatorHttpPorts)})`,
      `  Totals REST       ${scheme}://127.0.0.1:${entryPoints.totalsHttp}/total   (nginx over ${ports(nginx.totalsHttpPorts)})`,
      `  Relays            ${ports(services('relay').flatMap((service) => service.ports))}`,
      `  Metrics           /metrics on each service's HTTP port`,
    );
  } else {
    const [relay] = services('relay');
    lines.push(
      `  Calculator gRPC   127.0.0.1:${entryPoints.grpc}      (summa.v1.CalculatorService/Add, reflection on)`,
      `  Calculator HTTP   ${scheme}://127.0.0.1:${entryPoints.calculatorHttp}/v1/sums`,
      `  Totals REST       ${scheme}://127.0.0.1:${entryPoints.totalsHttp}/total`,
      `  Metrics           :${entryPoints.calculatorHttp}/metrics  ${capture ? '' : `:${relay!.httpPort}/metrics  `}:${entryPoints.totalsHttp}/metrics`,
    );
  }
  lines.push(`  PostgreSQL        ${redact(databaseUrl)}`);
  if (replicaDatabaseUrl) lines.push(`  Replica           ${redact(replicaDatabaseUrl)}   (GET /total reads here; ?consistency=strong reads the primary)`);
  lines.push(`  Kafka             ${kafkaBrokers}${kafkaCluster ? `   (SASL_SSL; users and CA in ${path.join(dataDir, 'kafka-cluster')})` : ''}`);
  if (connect) {
    const tasks = connectorState?.tasks.map((task) => task.state).join(',') || '-';
    lines.push(
      `  Kafka Connect     ${connect.restUrl}   (relay: Debezium connector ${CONNECTOR} ${connectorState?.connector ?? '?'}, task ${tasks}; slot ${SLOT}; log ${connect.logFile})`,
    );
  }
  lines.push(`  Logs              ${logDir}/<name>.log${clustered ? `, nginx: ${path.join(dataDir, 'nginx', 'error.log')}` : ''}   (npx summa logs [name] -f)`);
  lines.push(
    `  Components        ${runStateFile(dataDir)} (npx summa status)`,
    'Try: npx summa add 5 10 && npx summa total',
    'Press Ctrl-C to stop.',
    '',
  );
  return lines.join('\n');
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** nginx first (no new requests), then the services, then Kafka, then PostgreSQL. */
async function stop(): Promise<void> {
  stopping = true;
  await supervisor.stop(['nginx']);
  await supervisor.stop();
  await connect?.stop();
  await kafka?.stop();
  await kafkaCluster?.stop();
  await replica?.stop();
  await postgres?.stop();
  await runStateWrites;
  if (databaseUrl) await rm(runStateFile(dataDir), { force: true });
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
