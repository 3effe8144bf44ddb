// What every Kafka JVM started here shares, the single broker (kafka-broker.ts), the nodes of a
// cluster (kafka-cluster.ts) and Kafka Connect (kafka-connect.ts): Java and the jars, the JVM's flags, formatting the storage, a process
// that dies with Node, and waiting until it serves.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Admin } from '@platformatic/kafka';
import { spawnTiedToParent } from '../lib/tied-process.ts';

export const HOST = '127.0.0.1';
/** The broker's pom; Kafka Connect has its own (kafka-connect.ts). */
export const BROKER_POM = fileURLToPath(new URL('./kafka/pom.xml', import.meta.url));
const READY_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 20_000;

/** Options for an Admin client besides its brokers (SASL, TLS), as @platformatic/kafka takes them. */
export type ProbeClientOptions = Omit<ConstructorParameters<typeof Admin>[0], 'bootstrapBrokers' | 'clientId'>;

/** Java, the jars and the JVM flags to run Kafka's classes with, logging into `logDir`. */
export interface KafkaJvm {
  java: string;
  jvmArgs: string[];
}

/**
 * Checks Java, resolves the jars of `pom` (default: the broker's; cached in `dataDir`) and writes
 * the log4j config into `dataDir`. Kafka's own logs go to stdout, which the caller sends to a file.
 */
export async function prepareKafkaJvm(options: { dataDir: string; logDir: string; heapMb: number; pom?: string }): Promise<KafkaJvm> {
  const java = checkJava();
  const classpath = await resolveClasspath(options.pom ?? BROKER_POM, options.dataDir, options.logDir);
  const log4jConfig = path.join(options.dataDir, 'log4j2.properties');
  await writeFile(log4jConfig, LOG4J2_PROPERTIES);
  const jvmArgs = [
    `-Xms${options.heapMb}m`,
    `-Xmx${options.heapMb}m`,
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:InitiatingHeapOccupancyPercent=35',
    '-XX:+ExplicitGCInvokesConcurrent',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${log4jConfig}`,
    `-Dkafka.logs.dir=${options.logDir}`,
    '-cp',
    classpath,
  ];
  return { java, jvmArgs };
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

/** The pom's classpath, resolved by Maven once per version of the pom and cached in dataDir. */
async function resolveClasspath(pomPath: string, dataDir: string, logDir: string): Promise<string> {
  const pom = await readFile(pomPath);
  const hash = createHash('sha256').update(pom).digest('hex').slice(0, 16);
  const cacheFile = path.join(dataDir, `classpath-${hash}.txt`);
  const cached = await readFile(cacheFile, 'utf8').catch(() => null);
  // The jars live in ~/.m2, which may have been cleaned since.
  if (cached && cached.split(path.delimiter).every((jar) => existsSync(jar))) return cached.trim();

  const tmpFile = `${cacheFile}.${process.pid}.tmp`;
  const mavenLog = path.join(logDir, 'maven.log');
  const result = await runToFile(
    'mvn',
    ['-q', '-B', '-Dstyle.color=never', '-f', pomPath, 'dependency:build-classpath', `-Dmdep.outputFile=${tmpFile}`],
    mavenLog,
  );
  if (result.error) {
    throw new Error(`Cannot run 'mvn' (${result.error.message}); Maven is needed to fetch the Kafka jars`);
  }
  if (result.code !== 0) {
    throw new Error(`Maven could not resolve the classpath from ${pomPath}; see ${mavenLog}:\n${await tail(mavenLog)}`);
  }
  await rename(tmpFile, cacheFile);
  return (await readFile(cacheFile, 'utf8')).trim();
}

// Kafka logs through slf4j -> log4j2; stdout is redirected to the broker's log file.
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

/** The cluster id stored in `file`, made and stored the first time. */
export async function persistedClusterId(file: string): Promise<string> {
  let clusterId = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (!clusterId) {
    clusterId = kafkaClusterId();
    await writeFile(file, `${clusterId}\n`);
  }
  return clusterId;
}

function kafkaClusterId(): string {
  // Kafka's Uuid.toString(): 16 random bytes, url-safe base64 without padding; Kafka never hands out
  // ids starting with '-' since they read like command-line flags.
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/**
 * Formats the storage that `serverProperties` names (unless it already is) for the cluster
 * `clusterId`; `extraArgs` go to the StorageTool (such as --add-scram).
 */
export async function formatStorage(
  jvm: KafkaJvm,
  options: { clusterId: string; serverProperties: string; formatLog: string; extraArgs?: string[] },
): Promise<void> {
  const { clusterId, serverProperties, formatLog } = options;
  const result = await runToFile(
    jvm.java,
    [...jvm.jvmArgs, 'kafka.tools.StorageTool', 'format', '--ignore-formatted', '-t', clusterId, '-c', serverProperties, ...(options.extraArgs ?? [])],
    formatLog,
  );
  if (result.error || result.code !== 0) {
    throw new Error(`Formatting the Kafka storage of ${serverProperties} failed (exit ${result.code}); see ${formatLog}:\n${await tail(formatLog)}`, {
      cause: result.error,
    });
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

/** A running Kafka JVM. */
export interface KafkaProcess {
  readonly pid: number;
  /** Resolves once it has exited. */
  readonly exited: Promise<void>;
  /** SIGTERM (controlled shutdown), SIGKILL if it has not exited within `graceMs` (default 20s). */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL. */
  kill(): Promise<void>;
}

/**
 * Starts `kafka.Kafka serverProperties` with its output in `logFile` (the previous one kept as
 * `.1`), and resolves once the broker on `brokers` answers a metadata request; kills it and rejects
 * with the log's tail if it exits or does not serve within `readyTimeoutMs` (default 90s).
 */
export function launchKafka(
  jvm: KafkaJvm,
  options: { serverProperties: string; logFile: string; brokers: string; probe?: ProbeClientOptions; readyTimeoutMs?: number },
): Promise<KafkaProcess> {
  const { logFile, brokers } = options;
  return launchJvm(jvm, {
    mainClass: 'kafka.Kafka',
    args: [options.serverProperties],
    logFile,
    waitUntilReady: (child, exited) =>
      waitUntilServing(brokers, options.probe ?? {}, options.readyTimeoutMs ?? READY_TIMEOUT_MS, child, exited, logFile),
  });
}

/**
 * Starts `mainClass args` on `jvm` with its output in `logFile` (the previous one kept as `.1`),
 * and resolves once `waitUntilReady` does; kills the JVM if that rejects, and rejects with its error.
 */
export async function launchJvm(
  jvm: KafkaJvm,
  options: {
    mainClass: string;
    args: string[];
    logFile: string;
    /** Resolves once the process serves; rejects (with the log's tail) if it died or took too long. */
    waitUntilReady: (child: ChildProcess, exited: Promise<void>) => Promise<void>;
  },
): Promise<KafkaProcess> {
  const { logFile } = options;
  if (existsSync(logFile)) await rename(logFile, `${logFile}.1`);
  const child = spawnTiedToParent(jvm.java, [...jvm.jvmArgs, options.mainClass, ...options.args], logFile);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    // A failed spawn emits 'error' and never 'exit'.
    child.once('error', () => child.pid === undefined && resolve());
  });

  try {
    await options.waitUntilReady(child, exited);
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
    pid: child.pid!,
    exited,
    stop: (graceMs = STOP_TIMEOUT_MS) => terminate('SIGTERM', graceMs),
    kill: () => terminate('SIGKILL', 0),
  };
}

async function waitUntilServing(brokers: string, probe: ProbeClientOptions, timeoutMs: number, child: ChildProcess, exited: Promise<void>, logFile: string) {
  const deadline = Date.now() + timeoutMs;
  let died = false;
  void exited.then(() => (died = true));
  let lastError: unknown;
  while (!died && Date.now() < deadline) {
    const admin = new Admin({ retries: 0, connectTimeout: 1_000, requestTimeout: 2_000, ...probe, clientId: 'summa-broker-probe', bootstrapBrokers: [brokers] });
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
    : `did not serve requests within ${timeoutMs / 1000}s (last error: ${String(lastError)})`;
  throw new Error(`Kafka broker on ${brokers} ${why}; see ${logFile}:\n${await tail(logFile)}`);
}

/** The log's last lines, preceded by its last errors (which a long shutdown may push out of the tail). */
export async function tail(file: string, bytes = 256 * 1024): Promise<string> {
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

export { freePort } from '../lib/free-port.ts';
