import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Admin } from '@platformatic/kafka';
import { spawnTiedToParent } from '../lib/tied-process.ts';

export interface KafkaBrokerOptions {
  /** Everything (logs, metadata, Kafka log dirs, cached classpath) lives here and persists across restarts. */
  dataDir: string;
  /** Client listener port on 127.0.0.1; default 9092; 0 picks a free port. */
  port?: number;
  /** KRaft controller listener port on 127.0.0.1; default: a free port. */
  controllerPort?: number;
  /** Default 512. */
  heapMb?: number;
  /**
   * Default true: the broker writes each record to disk (fsync) before acknowledging it. False leaves
   * flushing to the operating system, as Kafka does by default; only for measuring what it costs.
   */
  flushEveryRecord?: boolean;
}

export interface KafkaBroker {
  /** "127.0.0.1:PORT", for KafkaSettings.brokers. */
  readonly brokers: string;
  readonly port: number;
  readonly controllerPort: number;
  /** The JVM's pid. */
  readonly pid: number;
  readonly logFile: string;
  /** SIGTERM (controlled shutdown), SIGKILL if it has not exited within 20s. */
  stop(): Promise<void>;
  /** SIGKILL, for fault tests. */
  kill(): Promise<void>;
}

const POM_PATH = fileURLToPath(new URL('./kafka/pom.xml', import.meta.url));
const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 20_000;

/**
 * A real single-node Apache Kafka broker (KRaft, broker+controller in one JVM) for local runs and
 * tests. The jars come from Maven Central through tools/local-stack/kafka/pom.xml. Resolves once the broker
 * answers a metadata request.
 */
export async function startKafkaBroker(options: KafkaBrokerOptions): Promise<KafkaBroker> {
  const dataDir = path.resolve(options.dataDir);
  const logDir = path.join(dataDir, 'logs');
  const kafkaLogDir = path.join(dataDir, 'kafka-logs');
  await mkdir(logDir, { recursive: true });

  const java = checkJava();
  const classpath = await resolveClasspath(dataDir);

  const port = options.port === 0 ? await freePort() : (options.port ?? 9092);
  const controllerPort = options.controllerPort || (await freePort([port]));
  const serverProperties = path.join(dataDir, 'server.properties');
  const log4jConfig = path.join(dataDir, 'log4j2.properties');
  await writeFile(serverProperties, renderServerProperties({ port, controllerPort, kafkaLogDir, flushEveryRecord: options.flushEveryRecord ?? true }));
  await writeFile(log4jConfig, LOG4J2_PROPERTIES);

  const jvmArgs = [
    `-Xms${options.heapMb ?? 512}m`,
    `-Xmx${options.heapMb ?? 512}m`,
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:InitiatingHeapOccupancyPercent=35',
    '-XX:+ExplicitGCInvokesConcurrent',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${log4jConfig}`,
    `-Dkafka.logs.dir=${logDir}`,
    '-cp',
    classpath,
  ];

  if (!existsSync(path.join(kafkaLogDir, 'meta.properties'))) {
    await formatStorage(java, jvmArgs, dataDir, serverProperties, path.join(logDir, 'format.log'));
  }

  const logFile = path.join(logDir, 'broker.log');
  if (existsSync(logFile)) await rename(logFile, `${logFile}.1`);
  const child = spawnTiedToParent(java, [...jvmArgs, 'kafka.Kafka', serverProperties], logFile);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    // A failed spawn emits 'error' and never 'exit'.
    child.once('error', () => child.pid === undefined && resolve());
  });

  const brokers = `${HOST}:${port}`;
  try {
    await waitUntilServing(brokers, child, exited, logFile);
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }

  const terminate = async (signal: NodeJS.Signals, graceMs: number) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };

  return {
    brokers,
    port,
    controllerPort,
    pid: child.pid!,
    logFile,
    stop: () => terminate('SIGTERM', STOP_TIMEOUT_MS),
    kill: () => terminate('SIGKILL', 0),
  };
}

function checkJava(): string {
  const result = spawnSync('java', ['-version'], { encoding: 'utf8' });
  if (result.error) {
    throw new Error(`Cannot run 'java' (${result.error.message}); a JDK 17+ on PATH is needed to run the Kafka broker`);
  }
  const major = Number(/version "(\d+)/.exec(result.stderr)?.[1] ?? 0);
  if (major < 17) {
    throw new Error(`Kafka 4 needs Java 17+, but 'java -version' says: ${result.stderr.split('\n')[0]}`);
  }
  return 'java';
}

/** The broker's classpath, resolved by Maven once per version of the pom and cached in dataDir. */
async function resolveClasspath(dataDir: string): Promise<string> {
  const pom = await readFile(POM_PATH);
  const hash = createHash('sha256').update(pom).digest('hex').slice(0, 16);
  const cacheFile = path.join(dataDir, `classpath-${hash}.txt`);
  const cached = await readFile(cacheFile, 'utf8').catch(() => null);
  // The jars live in ~/.m2, which may have been cleaned since.
  if (cached && cached.split(path.delimiter).every((jar) => existsSync(jar))) return cached.trim();

  const tmpFile = `${cacheFile}.${process.pid}.tmp`;
  const mavenLog = path.join(dataDir, 'logs', 'maven.log');
  const result = await runToFile(
    'mvn',
    ['-q', '-B', '-Dstyle.color=never', '-f', POM_PATH, 'dependency:build-classpath', `-Dmdep.outputFile=${tmpFile}`],
    mavenLog,
  );
  if (result.error) {
    throw new Error(`Cannot run 'mvn' (${result.error.message}); Maven is needed to fetch the Kafka broker jars`);
  }
  if (result.code !== 0) {
    throw new Error(`Maven could not resolve the Kafka broker classpath from ${POM_PATH}; see ${mavenLog}:\n${await tail(mavenLog)}`);
  }
  await rename(tmpFile, cacheFile);
  return (await readFile(cacheFile, 'utf8')).trim();
}

function renderServerProperties(p: { port: number; controllerPort: number; kafkaLogDir: string; flushEveryRecord: boolean }): string {
  const settings: Record<string, string | number | boolean> = {
    'process.roles': 'broker,controller',
    'node.id': 1,
    'controller.quorum.voters': `1@${HOST}:${p.controllerPort}`,
    listeners: `PLAINTEXT://${HOST}:${p.port},CONTROLLER://${HOST}:${p.controllerPort}`,
    'advertised.listeners': `PLAINTEXT://${HOST}:${p.port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': p.kafkaLogDir,
    'auto.create.topics.enable': false,
    'num.partitions': 1,
    'default.replication.factor': 1,
    'min.insync.replicas': 1,
    // The relay deletes an event from the outbox once Kafka acknowledged it, so an acknowledged record
    // must survive whatever the outbox row would have. A cluster gets that from acks=all with
    // min.insync.replicas ≥ 2: a record acknowledged by two brokers survives one of them losing power
    // before its page cache reached the disk. A single broker has no other copy, and by default acknowledges a record while it is
    // still only in the page cache, so a power loss right after the ack would lose an event that is
    // in neither place any more. Flushing after every record makes the ack mean "on disk".
    ...(p.flushEveryRecord ? { 'log.flush.interval.messages': 1 } : {}),
    'offsets.topic.replication.factor': 1,
    // 50 by default; fewer makes the first group coordinator lookup and restarts quicker.
    'offsets.topic.num.partitions': 10,
    'transaction.state.log.replication.factor': 1,
    'transaction.state.log.min.isr': 1,
    'transaction.state.log.num.partitions': 10,
    'share.coordinator.state.topic.replication.factor': 1,
    'share.coordinator.state.topic.min.isr': 1,
    'group.initial.rebalance.delay.ms': 0,
    // After a SIGKILL the restarted broker cannot register until the controller has fenced its
    // previous incarnation, which takes broker.session.timeout.ms (default 9s).
    'broker.heartbeat.interval.ms': 1_000,
    'broker.session.timeout.ms': 5_000,
  };
  const lines = Object.entries(settings).map(([key, value]) => `${key}=${value}`);
  return `# Written by tools/local-stack/kafka-broker.ts on every start; edits are lost.\n${lines.join('\n')}\n`;
}

// Kafka logs through slf4j -> log4j2; stdout is redirected to logs/broker.log by the launcher.
const LOG4J2_PROPERTIES = `status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = warn
`;

function kafkaClusterId(): string {
  // Kafka's Uuid.toString(): 16 random bytes, url-safe base64 without padding; Kafka never hands out
  // ids starting with '-' since they read like command-line flags.
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

async function formatStorage(
  java: string,
  jvmArgs: string[],
  dataDir: string,
  serverProperties: string,
  formatLog: string,
): Promise<void> {
  const clusterIdFile = path.join(dataDir, 'cluster-id');
  let clusterId = (await readFile(clusterIdFile, 'utf8').catch(() => '')).trim();
  if (!clusterId) {
    clusterId = kafkaClusterId();
    await writeFile(clusterIdFile, `${clusterId}\n`);
  }
  const result = await runToFile(
    java,
    [...jvmArgs, 'kafka.tools.StorageTool', 'format', '--ignore-formatted', '-t', clusterId, '-c', serverProperties],
    formatLog,
  );
  if (result.error || result.code !== 0) {
    throw new Error(
      `Formatting the Kafka storage in ${dataDir} failed (exit ${result.code}); see ${formatLog}:\n${await tail(formatLog)}`,
      { cause: result.error },
    );
  }
}

/** Runs a command to completion with its output going to `outputFile`. */
function runToFile(command: string, args: string[], outputFile: string): Promise<{ code: number | null; error?: Error }> {
  const out = openSync(outputFile, 'w');
  try {
    const child = spawn(command, args, { stdio: ['ignore', out, out] });
    return new Promise((resolve) => {
      child.once('error', (error) => resolve({ code: null, error }));
      child.once('exit', (code) => resolve({ code }));
    });
  } finally {
    closeSync(out);
  }
}

async function waitUntilServing(brokers: string, child: ChildProcess, exited: Promise<void>, logFile: string) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let died = false;
  void exited.then(() => (died = true));
  let lastError: unknown;
  while (!died && Date.now() < deadline) {
    const admin = new Admin({
      clientId: 'summa-broker-probe',
      bootstrapBrokers: [brokers],
      retries: 0,
      connectTimeout: 1_000,
      requestTimeout: 2_000,
    });
    try {
      const metadata = await Promise.race([admin.metadata({ topics: [] }), exited.then(() => null)]);
      if (metadata && metadata.brokers.size > 0) return;
      lastError = new Error('metadata lists no broker yet');
    } catch (error) {
      lastError = error;
    } finally {
      await admin.close().catch(() => {});
    }
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 250))]);
  }
  const why = died
    ? `exited (code ${child.exitCode}, signal ${child.signalCode})`
    : `did not serve requests within ${READY_TIMEOUT_MS / 1000}s (last error: ${String(lastError)})`;
  throw new Error(`Kafka broker on ${brokers} ${why}; see ${logFile}:\n${await tail(logFile)}`);
}

/** The log's last lines, preceded by its last errors (which a long shutdown may push out of the tail). */
async function tail(file: string, bytes = 256 * 1024): Promise<string> {
  let text: string;
  try {
    const size = (await stat(file)).size;
    const handle = await open(file, 'r');
    try {
      const buffer = Buffer.alloc(Math.min(bytes, size));
      await handle.read(buffer, 0, buffer.length, size - buffer.length);
      text = buffer.toString('utf8');
    } finally {
      await handle.close();
    }
  } catch {
    return '(no log)';
  }
  const lines = text.split('\n');
  const errors = lines.filter((line) => /\] (ERROR|FATAL) |^Caused by: /.test(line)).slice(-6);
  const last = lines.slice(-25);
  return errors.length > 0 ? [...errors, '...', ...last].join('\n') : last.join('\n');
}

function freePort(exclude: number[] = []): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      server.close(() => {
        const port = typeof address === 'object' && address ? address.port : 0;
        if (port === 0 || exclude.includes(port)) freePort(exclude).then(resolve, reject);
        else resolve(port);
      });
    });
  });
}
