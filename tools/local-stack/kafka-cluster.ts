import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Admin } from '@platformatic/kafka';
import {
  formatStorage,
  freePort,
  HOST,
  launchKafka,
  persistedClusterId,
  prepareKafkaJvm,
  tail,
  type KafkaJvm,
  type KafkaProcess,
  type ProbeClientOptions,
} from './kafka-jvm.ts';
import { renderProperties, sharedBrokerSettings } from './kafka-properties.ts';

export interface KafkaClusterOptions {
  /** Every node's storage and logs (a folder per node), the ports chosen and the cluster id persist here. */
  dataDir: string;
  /** Default 3; each node is broker and controller, with node ids 1..nodes. */
  nodes?: number;
  /**
   * Client listener port of each node on 127.0.0.1; default 9092, 9093, ...; 0 picks a free port the
   * first time and the same one on every later start from this dataDir.
   */
  ports?: number[];
  /** KRaft controller listener port of each node; default 29092, 29093, ...; 0 as for `ports`. */
  controllerPorts?: number[];
  /** Heap of each node's JVM; default 384. */
  heapMb?: number;
  /** As for the single broker (see kafka-properties.ts); default true. */
  flushEveryRecord?: boolean;
}

export interface KafkaNode {
  /** Its node id, which is also its broker id. */
  readonly id: number;
  readonly port: number;
  readonly controllerPort: number;
  /** "127.0.0.1:PORT" of this node alone. */
  readonly brokers: string;
  readonly logFile: string;
  /** The pid of its JVM (the last one's, while it is not running). */
  pid(): number;
  running(): boolean;
  /** SIGKILL, for fault tests. */
  kill(): Promise<void>;
  /** SIGTERM (controlled shutdown), SIGKILL if it has not exited within 20s. */
  stop(): Promise<void>;
  /** Starts it again after kill() or stop(); resolves once it serves and counts itself in the cluster. */
  start(): Promise<void>;
}

export interface KafkaCluster {
  /** "127.0.0.1:P1,127.0.0.1:P2,...", for KAFKA_BROKERS. */
  readonly brokers: string;
  readonly nodes: readonly KafkaNode[];
  /** Stops every node. */
  stop(): Promise<void>;
}

const DEFAULT_PORT = 9092;
const DEFAULT_CONTROLLER_PORT = 29092;
const CLUSTER_READY_TIMEOUT_MS = 90_000;

/**
 * A real Apache Kafka cluster of `nodes` KRaft nodes (each broker and controller in one JVM, all of
 * them voters) on 127.0.0.1, for the cluster mode of `npm start` and for tests. The JVMs start in
 * parallel; resolves once every node answers metadata listing all the brokers.
 */
export async function startKafkaCluster(options: KafkaClusterOptions): Promise<KafkaCluster> {
  const dataDir = path.resolve(options.dataDir);
  const count = options.nodes ?? 3;
  if (!Number.isInteger(count) || count < 1) throw new Error(`startKafkaCluster: nodes must be a positive whole number, got ${count}`);
  const logDir = path.join(dataDir, 'logs');
  await mkdir(logDir, { recursive: true });
  const jvm = await prepareKafkaJvm({ dataDir, logDir, heapMb: options.heapMb ?? 384 });
  const { ports, controllerPorts } = await choosePorts(dataDir, count, options);
  const clusterId = await persistedClusterId(path.join(dataDir, 'cluster-id'));
  const voters = controllerPorts.map((port, index) => `${index + 1}@${HOST}:${port}`).join(',');

  const specs = ports.map((port, index): NodeSpec => {
    const id = index + 1;
    const nodeDir = path.join(dataDir, `node-${id}`);
    return {
      id,
      port,
      controllerPort: controllerPorts[index]!,
      nodeDir,
      kafkaLogDir: path.join(nodeDir, 'kafka-logs'),
      serverProperties: path.join(nodeDir, 'server.properties'),
      logFile: path.join(nodeDir, 'logs', 'broker.log'),
    };
  });
  await Promise.all(
    specs.map(async (spec) => {
      await mkdir(path.dirname(spec.logFile), { recursive: true });
      const settings = nodeSettings(spec, { voters, brokers: count, flushEveryRecord: options.flushEveryRecord ?? true });
      await writeFile(spec.serverProperties, renderProperties(settings, 'tools/local-stack/kafka-cluster.ts'));
      if (!existsSync(path.join(spec.kafkaLogDir, 'meta.properties'))) {
        await formatStorage(jvm, { clusterId, serverProperties: spec.serverProperties, formatLog: path.join(spec.nodeDir, 'logs', 'format.log') });
      }
    }),
  );

  const nodes = specs.map((spec) => new ClusterNode(spec, jvm, {}));
  const brokers = nodes.map((node) => node.brokers).join(',');
  // A node alone cannot serve: its broker waits for a quorum of controllers, so all start at once.
  const started = await Promise.allSettled(nodes.map((node) => node.start()));
  const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  try {
    if (failed) throw failed.reason;
    await waitForBrokers(brokers, {}, count, nodes);
  } catch (error) {
    await Promise.all(nodes.map((node) => node.kill()));
    throw error;
  }
  return {
    brokers,
    nodes,
    async stop() {
      await Promise.all(nodes.map((node) => node.stop()));
    },
  };
}

interface NodeSpec {
  id: number;
  port: number;
  controllerPort: number;
  nodeDir: string;
  kafkaLogDir: string;
  serverProperties: string;
  logFile: string;
}

class ClusterNode implements KafkaNode {
  private process: KafkaProcess | null = null;
  private lastPid = 0;
  private starting: Promise<void> | null = null;

  constructor(
    private readonly spec: NodeSpec,
    private readonly jvm: KafkaJvm,
    private readonly probe: ProbeClientOptions,
  ) {}

  get id() {
    return this.spec.id;
  }
  get port() {
    return this.spec.port;
  }
  get controllerPort() {
    return this.spec.controllerPort;
  }
  get brokers() {
    return `${HOST}:${this.spec.port}`;
  }
  get logFile() {
    return this.spec.logFile;
  }

  pid(): number {
    return this.process?.pid ?? this.lastPid;
  }

  running(): boolean {
    return this.process !== null;
  }

  start(): Promise<void> {
    if (this.process) return Promise.resolve();
    this.starting ??= launchKafka(this.jvm, { serverProperties: this.spec.serverProperties, logFile: this.spec.logFile, brokers: this.brokers, probe: this.probe })
      .then((process) => {
        this.process = process;
        this.lastPid = process.pid;
        void process.exited.then(() => {
          if (this.process === process) this.process = null;
        });
      })
      .finally(() => (this.starting = null));
    return this.starting;
  }

  async kill(): Promise<void> {
    await this.starting?.catch(() => {});
    await this.process?.kill();
    this.process = null;
  }

  async stop(): Promise<void> {
    await this.starting?.catch(() => {});
    await this.process?.stop();
    this.process = null;
  }
}

function nodeSettings(spec: NodeSpec, p: { voters: string; brokers: number; flushEveryRecord: boolean }): Record<string, string | number | boolean> {
  return {
    'process.roles': 'broker,controller',
    'node.id': spec.id,
    'controller.quorum.voters': p.voters,
    listeners: `PLAINTEXT://${HOST}:${spec.port},CONTROLLER://${HOST}:${spec.controllerPort}`,
    'advertised.listeners': `PLAINTEXT://${HOST}:${spec.port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': spec.kafkaLogDir,
    ...sharedBrokerSettings({ brokers: p.brokers, flushEveryRecord: p.flushEveryRecord }),
  };
}

interface ChosenPorts {
  ports: number[];
  controllerPorts: number[];
}

/**
 * Each node's ports: the one asked for; else, for 0 or nothing asked, the one chosen at an earlier
 * start from this dataDir (the quorum's voters and every client's bootstrap list name them); else
 * the default, or a free port for 0. Stored for the next start.
 */
async function choosePorts(dataDir: string, count: number, options: KafkaClusterOptions): Promise<ChosenPorts> {
  const file = path.join(dataDir, 'ports.json');
  const stored = JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as Partial<ChosenPorts>;
  for (const [name, asked] of [['ports', options.ports], ['controllerPorts', options.controllerPorts]] as const) {
    if (asked && asked.length !== count) throw new Error(`startKafkaCluster: ${name} lists ${asked.length} port(s) for ${count} node(s)`);
  }
  const taken: number[] = [];
  const pick = async (asked: number | undefined, before: number | undefined, fallback: number) => {
    const port = asked ? asked : before ? before : asked === 0 ? await freePort(taken) : fallback;
    if (taken.includes(port)) throw new Error(`startKafkaCluster: port ${port} is given to two listeners`);
    taken.push(port);
    return port;
  };
  const chosen: ChosenPorts = { ports: [], controllerPorts: [] };
  for (let index = 0; index < count; index++) chosen.ports.push(await pick(options.ports?.[index], stored.ports?.[index], DEFAULT_PORT + index));
  for (let index = 0; index < count; index++) {
    chosen.controllerPorts.push(await pick(options.controllerPorts?.[index], stored.controllerPorts?.[index], DEFAULT_CONTROLLER_PORT + index));
  }
  await writeFile(file, `${JSON.stringify(chosen)}\n`);
  return chosen;
}

/** Waits until the cluster's metadata lists `count` brokers. */
async function waitForBrokers(brokers: string, probe: ProbeClientOptions, count: number, nodes: readonly KafkaNode[]): Promise<void> {
  const deadline = Date.now() + CLUSTER_READY_TIMEOUT_MS;
  let seen = 0;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const admin = new Admin({ retries: 0, connectTimeout: 1_000, requestTimeout: 2_000, ...probe, clientId: 'summa-cluster-probe', bootstrapBrokers: brokers.split(',') });
    try {
      seen = (await admin.metadata({ topics: [], forceUpdate: true })).brokers.size;
      if (seen >= count) return;
    } catch (error) {
      lastError = error;
    } finally {
      await admin.close().catch(() => {});
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const logs = await Promise.all(nodes.map(async (node) => `--- node ${node.id} (${node.logFile}):\n${await tail(node.logFile)}`));
  throw new Error(
    `The Kafka cluster on ${brokers} listed ${seen} of ${count} brokers after ${CLUSTER_READY_TIMEOUT_MS / 1000}s` +
      `${lastError ? ` (last error: ${String(lastError)})` : ''}\n${logs.join('\n')}`,
  );
}
