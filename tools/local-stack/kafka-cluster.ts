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
import { ensureKafkaCredentials, type KafkaCredential, type KafkaUser } from './kafka-credentials.ts';
import { setUpServiceAccess, type ServiceAccess } from './kafka-acls.ts';
import { ensureKafkaTls, type KafkaTlsFiles } from './kafka-tls.ts';
import type { KafkaClientSettings } from '../../src/cli/run-state.ts';
import { baseClientOptions, envKafkaSecurity, kafkaSecurityEnv, type KafkaSettings } from '../../src/platform/kafka/settings.ts';
import type { TopicDurability } from '../../src/platform/kafka/topics.ts';

export { KAFKA_USERS, type KafkaUser } from './kafka-credentials.ts';
export type { ServiceAccess } from './kafka-acls.ts';

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
  /**
   * 'sasl_ssl': clients connect with TLS and SCRAM-SHA-512 as one of KAFKA_USERS, and ACLs decide
   * what each may do. Default 'plaintext': anyone may do anything. A dataDir keeps the mode it was
   * first started with.
   */
  security?: KafkaClusterSecurity;
}

export type KafkaClusterSecurity = 'plaintext' | 'sasl_ssl';

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
  /** Starts it again after kill() or stop(); resolves once it serves (a broker opens its client listener only once the controller has unfenced it). */
  start(): Promise<void>;
}

export interface KafkaCluster {
  /** "127.0.0.1:P1,127.0.0.1:P2,...", for KAFKA_BROKERS. */
  readonly brokers: string;
  readonly nodes: readonly KafkaNode[];
  readonly security: KafkaClusterSecurity;
  /** The super user's settings as files, for the run state (summa status). */
  readonly admin: KafkaClientSettings;
  /**
   * The variables a service running as `user` needs: KAFKA_BROKERS, KAFKA_SECURITY_PROTOCOL and,
   * with sasl_ssl, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD_FILE, KAFKA_TLS_CA_FILE.
   */
  clientEnv(user: KafkaUser): Record<string, string>;
  /** Settings for a client of this process that connects as `user`. */
  clientSettings(user: KafkaUser, clientId: string): KafkaSettings;
  /**
   * Creates the services' topics as the super user (6 partitions, 3 replicas, min.insync.replicas 2
   * on three nodes) and, with sasl_ssl, grants the service users their ACLs (kafka-acls.ts). Call
   * it before starting the services, which then find their topics there.
   */
  setUpServiceAccess(access: ServiceAccess): Promise<TopicDurability[]>;
  /** Stops every node. */
  stop(): Promise<void>;
}

const DEFAULT_PORT = 9092;
const DEFAULT_CONTROLLER_PORT = 29092;
// Three JVMs starting at once on a small machine take a while, and a node serves only once a quorum
// of them has formed.
const NODE_READY_TIMEOUT_MS = 180_000;
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
  const security = await persistedSecurity(dataDir, options.security ?? 'plaintext');
  const secured = security === 'sasl_ssl' ? await prepareSecurity(dataDir) : undefined;
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
      const settings = {
        ...nodeSettings(spec, { voters, brokers: count, flushEveryRecord: options.flushEveryRecord ?? true, listener: secured ? 'SASL_SSL' : 'PLAINTEXT' }),
        ...(secured ? securitySettings(secured) : {}),
      };
      // Mode 600: with sasl_ssl it holds the super user's password.
      await writeFile(spec.serverProperties, renderProperties(settings, 'tools/local-stack/kafka-cluster.ts'), { mode: 0o600 });
      if (!existsSync(path.join(spec.kafkaLogDir, 'meta.properties'))) {
        // SCRAM credentials live in the cluster's metadata; the first ones are written into it when
        // the storage is formatted, since no client can log in to add them before there are some.
        // The passwords are on the command line of this short-lived local process only.
        const scram = secured ? [...secured.credentials.values()].flatMap((c) => ['--add-scram', `SCRAM-SHA-512=[name=${c.username},password=${c.password}]`]) : [];
        await formatStorage(jvm, { clusterId, serverProperties: spec.serverProperties, formatLog: path.join(spec.nodeDir, 'logs', 'format.log'), extraArgs: scram });
      }
    }),
  );

  const brokers = specs.map((spec) => `${HOST}:${spec.port}`).join(',');
  const filesOf = (user: KafkaUser): KafkaClientSettings =>
    secured
      ? { securityProtocol: 'SASL_SSL', saslMechanism: 'SCRAM-SHA-512', username: user, passwordFile: secured.credentials.get(user)!.passwordFile, caFile: secured.tls.caFile }
      : { securityProtocol: 'PLAINTEXT' };
  const clientSettings = (user: KafkaUser, clientId: string): KafkaSettings => ({
    brokers: brokers.split(','),
    clientId,
    security: envKafkaSecurity(kafkaSecurityEnv(filesOf(user))),
  });
  // The probes keep their own short timeouts, and take only how to connect.
  const { tls, sasl } = baseClientOptions(clientSettings('summa-admin', 'summa-cluster-probe'));
  const probe: ProbeClientOptions = { ...(tls ? { tls } : {}), ...(sasl ? { sasl } : {}) };
  const nodes = specs.map((spec) => new ClusterNode(spec, jvm, probe));
  // A node alone cannot serve: its broker waits for a quorum of controllers, so all start at once.
  const started = await Promise.allSettled(nodes.map((node) => node.start()));
  const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  try {
    if (failed) throw failed.reason;
    await waitForBrokers(brokers, probe, count, nodes);
  } catch (error) {
    await Promise.all(nodes.map((node) => node.kill()));
    throw error;
  }
  return {
    brokers,
    nodes,
    security,
    admin: filesOf('summa-admin'),
    clientEnv: (user) => ({ KAFKA_BROKERS: brokers, ...kafkaSecurityEnv(filesOf(user)) }),
    clientSettings,
    setUpServiceAccess: (access) => setUpServiceAccess(clientSettings('summa-admin', 'summa-cluster-setup'), access, { withAcls: secured !== undefined }),
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
    this.starting ??= launchKafka(this.jvm, { serverProperties: this.spec.serverProperties, logFile: this.spec.logFile, brokers: this.brokers, probe: this.probe, readyTimeoutMs: NODE_READY_TIMEOUT_MS })
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

interface Secured {
  tls: KafkaTlsFiles;
  credentials: Map<KafkaUser, KafkaCredential>;
}

async function prepareSecurity(dataDir: string): Promise<Secured> {
  const [tls, credentials] = await Promise.all([ensureKafkaTls(path.join(dataDir, 'tls')), ensureKafkaCredentials(path.join(dataDir, 'credentials'))]);
  return { tls, credentials };
}

/** The mode a dataDir was first started with: its storage holds SCRAM users only if that was sasl_ssl. */
async function persistedSecurity(dataDir: string, wanted: KafkaClusterSecurity): Promise<KafkaClusterSecurity> {
  const file = path.join(dataDir, 'security');
  const before = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (before && before !== wanted) {
    throw new Error(`The Kafka cluster in ${dataDir} was set up with security '${before}', not '${wanted}'; start it as it was, or from another data dir`);
  }
  if (!before) await writeFile(file, `${wanted}\n`);
  return wanted;
}

/**
 * Both listeners of every node take only TLS with SASL; the client listener also carries the
 * traffic between brokers, as summa-admin. A separate plaintext listener for it, even on loopback,
 * would have to make its anonymous principal a super user, which any process on the machine could
 * then connect as. The controller listener uses PLAIN (inside TLS) rather than SCRAM: SCRAM
 * credentials live in the metadata log, which the controllers must reach a quorum to read, so
 * they cannot check SCRAM logins among themselves; its one user is summa-admin, with the same password.
 */
function securitySettings({ tls, credentials }: Secured): Record<string, string> {
  const admin = credentials.get('summa-admin')!;
  const quoted = JSON.stringify(admin.password);
  return {
    'listener.security.protocol.map': 'SASL_SSL:SASL_SSL,CONTROLLER:SASL_SSL',
    'listener.name.sasl_ssl.sasl.enabled.mechanisms': 'SCRAM-SHA-512',
    'sasl.mechanism.inter.broker.protocol': 'SCRAM-SHA-512',
    'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config': `org.apache.kafka.common.security.scram.ScramLoginModule required username="summa-admin" password=${quoted};`,
    'listener.name.controller.sasl.enabled.mechanisms': 'PLAIN',
    'sasl.mechanism.controller.protocol': 'PLAIN',
    'listener.name.controller.plain.sasl.jaas.config':
      `org.apache.kafka.common.security.plain.PlainLoginModule required username="summa-admin" password=${quoted} user_summa-admin=${quoted};`,
    'ssl.keystore.type': 'PEM',
    'ssl.keystore.location': tls.keystoreFile,
    'ssl.truststore.type': 'PEM',
    'ssl.truststore.location': tls.caFile,
    'authorizer.class.name': 'org.apache.kafka.metadata.authorizer.StandardAuthorizer',
    'super.users': 'User:summa-admin',
    'allow.everyone.if.no.acl.found': 'false',
  };
}

function nodeSettings(spec: NodeSpec, p: { voters: string; brokers: number; flushEveryRecord: boolean; listener: string }): Record<string, string | number | boolean> {
  return {
    'process.roles': 'broker,controller',
    'node.id': spec.id,
    'controller.quorum.voters': p.voters,
    listeners: `${p.listener}://${HOST}:${spec.port},CONTROLLER://${HOST}:${spec.controllerPort}`,
    'advertised.listeners': `${p.listener}://${HOST}:${spec.port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': p.listener,
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
