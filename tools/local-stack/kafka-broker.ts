import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatStorage, freePort, HOST, launchKafka, persistedClusterId, prepareKafkaJvm } from './kafka-jvm.ts';
import { renderProperties, sharedBrokerSettings } from './kafka-properties.ts';

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
  const jvm = await prepareKafkaJvm({ dataDir, logDir, heapMb: options.heapMb ?? 512 });

  const port = options.port === 0 ? await freePort() : (options.port ?? 9092);
  const controllerPort = options.controllerPort || (await freePort([port]));
  const serverProperties = path.join(dataDir, 'server.properties');
  await writeFile(serverProperties, renderServerProperties({ port, controllerPort, kafkaLogDir, flushEveryRecord: options.flushEveryRecord ?? true }));

  if (!existsSync(path.join(kafkaLogDir, 'meta.properties'))) {
    const clusterId = await persistedClusterId(path.join(dataDir, 'cluster-id'));
    await formatStorage(jvm, { clusterId, serverProperties, formatLog: path.join(logDir, 'format.log') });
  }

  const logFile = path.join(logDir, 'broker.log');
  const brokers = `${HOST}:${port}`;
  const broker = await launchKafka(jvm, { serverProperties, logFile, brokers });
  return {
    brokers,
    port,
    controllerPort,
    pid: broker.pid,
    logFile,
    stop: () => broker.stop(),
    kill: () => broker.kill(),
  };
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
    ...sharedBrokerSettings({ brokers: 1, flushEveryRecord: p.flushEveryRecord }),
  };
  return renderProperties(settings, 'tools/local-stack/kafka-broker.ts');
}
