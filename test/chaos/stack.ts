// The servers under the chaos harness's services: Kafka (one broker, or a cluster of three) and
// PostgreSQL (with a streaming replica or without), each a fault target that can be killed,
// stopped and started again on the same data and ports.
import path from 'node:path';
import { Admin } from '@platformatic/kafka';
import { baseClientOptions, type KafkaSecurity, type KafkaSettings } from '../../src/platform/kafka/settings.ts';
import { startKafkaCluster, type KafkaNode } from '../../tools/local-stack/kafka-cluster.ts';
import { startKafkaBroker, type KafkaBroker } from '../../tools/local-stack/kafka-broker.ts';
import { startPostgresReplica } from '../../tools/local-stack/postgres-replica.ts';
import { startPostgresServer, type PostgresServer } from '../../tools/local-stack/postgres-server.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { killPostgresCluster, sleep, waitForPortFree } from './processes.ts';
import { brokerNames, type ChaosTopology, type Component } from './topology.ts';

/** Something the harness faults: killed (-9) or stopped (SIGTERM), then started again. */
export interface FaultTarget {
  readonly name: string;
  readonly component: Component;
  kill(): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
  /**
   * Waits until faulting this target takes down no more than the system is built to lose (for a
   * broker of a cluster: every partition's replicas back in sync, so the others still make a
   * quorum); says why it gave up waiting, or nothing.
   */
  settle?(): Promise<string | undefined>;
}

/** The Kafka user a process connects as: each service has its own on a secured cluster. */
export type KafkaUser = 'relay' | 'totals' | 'admin';

export interface ChaosStack {
  /** The primary: every service writes there. */
  databaseUrl: string;
  /** Where the totals services read the total, when there is a replica. */
  readDatabaseUrl: string | undefined;
  /** KAFKA_BROKERS and, on a secured cluster, the security settings of `user`. */
  kafkaEnv(user: KafkaUser): Record<string, string>;
  /** The harness's own Kafka clients (the commit window's Admin) connect here, as the admin user. */
  kafkaBrokers: string[];
  /** Unset: PLAINTEXT. */
  kafkaSecurity: KafkaSecurity | undefined;
  /** The brokers, the primary and the replica. */
  targets: FaultTarget[];
  /** Everything down, hard. */
  teardown(): Promise<void>;
}

/** What the services do on Kafka: the harness sets their topics and group up before they start. */
export interface KafkaAccess {
  topic: string;
  deadLetterTopic: string;
  groupId: string;
}

export async function startChaosStack(topology: ChaosTopology, workDir: string, access: KafkaAccess, log: (line: string) => void): Promise<ChaosStack> {
  const teardowns: (() => Promise<unknown>)[] = [];
  const teardown = async () => {
    for (const down of teardowns.reverse()) await down().catch(() => {});
  };
  try {
    const postgres = await startPrimary(path.join(workDir, 'postgres'));
    teardowns.push(() => postgres.teardown());
    log(`PostgreSQL on ${postgres.port}`);
    const targets: FaultTarget[] = [postgres.target];
    let readDatabaseUrl: string | undefined;
    if (topology.replica) {
      const replica = await startReplica(postgres.server, path.join(workDir, 'postgres-replica'));
      teardowns.push(() => replica.teardown());
      targets.push(replica.target);
      readDatabaseUrl = replica.url;
      log(`PostgreSQL replica on ${replica.port}`);
    }
    if (topology.brokers === 1) {
      if (topology.kafkaSecurity) throw new Error('Kafka security needs the cluster of three brokers');
      const kafka = await startSingleBroker(path.join(workDir, 'kafka'), brokerNames(topology)[0]!);
      teardowns.push(() => kafka.teardown());
      targets.unshift(kafka.target);
      log(`Kafka on ${kafka.brokers}`);
      return {
        databaseUrl: postgres.url,
        readDatabaseUrl,
        kafkaEnv: () => ({ KAFKA_BROKERS: kafka.brokers }),
        kafkaBrokers: [kafka.brokers],
        kafkaSecurity: undefined,
        targets,
        teardown,
      };
    }
    const cluster = await startKafkaCluster({
      dataDir: path.join(workDir, 'kafka'),
      nodes: topology.brokers,
      ports: Array(topology.brokers).fill(0),
      controllerPorts: Array(topology.brokers).fill(0),
      security: topology.kafkaSecurity ? 'sasl_ssl' : 'plaintext',
    });
    teardowns.push(() => Promise.all(cluster.nodes.map((node) => node.kill())));
    // As `npm start -- --cluster`: the admin creates the topics and grants each service its ACLs.
    await cluster.setUpServiceAccess({ ...access, partitions: topology.partitions });
    const admin = cluster.clientSettings('summa-admin', 'summa-chaos');
    targets.unshift(...cluster.nodes.map((node) => brokerTarget(node, admin)));
    log(`Kafka cluster (${cluster.security}) on ${cluster.brokers}`);
    return {
      databaseUrl: postgres.url,
      readDatabaseUrl,
      kafkaEnv: (user) => cluster.clientEnv(user === 'admin' ? 'summa-admin' : user === 'relay' ? 'summa-relay' : 'summa-totals'),
      kafkaBrokers: admin.brokers,
      kafkaSecurity: admin.security,
      targets,
      teardown,
    };
  } catch (error) {
    await teardown();
    throw error;
  }
}

interface Started {
  target: FaultTarget;
  teardown(): Promise<void>;
}

async function startPrimary(dataDir: string): Promise<Started & { port: number; url: string; server: PostgresServer }> {
  const port = await freePort();
  const first = await startPostgresServer({ dataDir, port });
  let server: PostgresServer | undefined = first;
  await server.ensureDatabase('summa');
  const url = server.url('summa');
  /** kill -9 of the postmaster and every backend: nothing flushed, nothing shut down. */
  const kill = async () => {
    const down = server;
    server = undefined;
    if (down) await killPostgresCluster(await down.pid(), port);
  };
  return {
    port,
    url,
    // The replica takes its address and folder from it, which stay the same across restarts.
    server: first,
    target: {
      name: 'postgres',
      component: 'postgres',
      kill,
      stop: async () => {
        const down = server;
        server = undefined;
        await down?.stop();
      },
      start: async () => {
        await waitForPortFree(port);
        server = await startPostgresServer({ dataDir, port });
      },
    },
    teardown: async () => {
      const down = server;
      if (!down) return;
      await kill().catch(() => down.stop());
    },
  };
}

/**
 * A streaming replica of the primary. Its kill -9 is the postmaster's and its children's, as for
 * the primary; it resumes streaming from its slot when started again.
 */
async function startReplica(primary: PostgresServer, dataDir: string): Promise<Started & { port: number; url: string }> {
  const port = await freePort();
  const replica = await startPostgresReplica({ primary, dataDir, port });
  let running = true;
  const kill = async () => {
    if (!running) return;
    running = false;
    await killPostgresCluster(await replica.pid(), port);
  };
  return {
    port,
    url: replica.url('summa'),
    target: {
      name: 'replica',
      component: 'replica',
      kill,
      stop: async () => {
        running = false;
        await replica.stop();
      },
      start: async () => {
        await waitForPortFree(port);
        await replica.start();
        running = true;
      },
    },
    teardown: () => kill().catch(() => replica.stop()),
  };
}

/** How long a broker's partitions may take to be back in sync before it is faulted all the same. */
const IN_SYNC_TIMEOUT_MS = 60_000;
/** The topics' min.insync.replicas on three brokers: acks=all writes need this many in sync. */
const MIN_INSYNC_REPLICAS = 2;

/**
 * A node of the cluster. It is faulted only once every partition of the services' topics has
 * MIN_INSYNC_REPLICAS replicas in sync besides this node: one broker down at a time then never
 * stops acks=all writes, nor a quorum of controllers. (A follower still catching up after its own
 * restart may be faulted again; a leader whose followers are behind waits.)
 */
function brokerTarget(node: KafkaNode, admin: KafkaSettings): FaultTarget {
  return {
    name: `kafka-${node.id}`,
    component: 'kafka',
    kill: () => node.kill(),
    stop: () => node.stop(),
    start: () => node.start(),
    settle: async () => {
      const short = await waitForReplicasBesides(admin, node.id, IN_SYNC_TIMEOUT_MS);
      return short.length === 0 ? undefined : `partitions without ${MIN_INSYNC_REPLICAS} other replicas in sync after ${IN_SYNC_TIMEOUT_MS / 1000} s: ${short.slice(0, 5).join(', ')}`;
    },
  };
}

/**
 * Waits until every partition of the services' topics has MIN_INSYNC_REPLICAS in-sync replicas
 * other than `nodeId` (or all its other replicas, for a topic with fewer); returns those that do not.
 */
export async function waitForReplicasBesides(settings: KafkaSettings, nodeId: number, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let short: string[] = ['(metadata not read)'];
  while (Date.now() < deadline) {
    // Each look bounded on its own: a call that hangs must not use up the whole wait.
    const found = await Promise.race([partitionsShortBesides(settings, nodeId), sleep(10_000).then(() => undefined)]).catch(() => undefined);
    if (found) short = found;
    if (found?.length === 0) return [];
    await sleep(500);
  }
  return short;
}

async function partitionsShortBesides(settings: KafkaSettings, nodeId: number): Promise<string[]> {
  const admin = new Admin({ ...baseClientOptions(settings), retries: 0, connectTimeout: 2_000, timeout: 5_000 });
  try {
    // The services' topics: this client's metadata() cannot read Kafka's internal ones (it fails
    // on __consumer_offsets), whose replicas the brokers keep the same way.
    const topics = [...(await admin.listTopics())];
    const metadata = await admin.metadata({ topics, forceUpdate: true });
    const short: string[] = [];
    for (const [name, topic] of metadata.topics) {
      topic.partitions.forEach((partition, index) => {
        const others = partition.isr.filter((id) => id !== nodeId).length;
        if (partition.leader < 0 || others < Math.min(MIN_INSYNC_REPLICAS, partition.replicas.length - 1)) short.push(`${name}-${index}`);
      });
    }
    return short;
  } finally {
    void admin.close().catch(() => {});
  }
}

async function startSingleBroker(dataDir: string, name: string): Promise<Started & { brokers: string }> {
  let broker: KafkaBroker | undefined = await startKafkaBroker({ dataDir, port: 0 });
  const { port, controllerPort, brokers } = broker;
  const down = async (how: 'kill' | 'stop') => {
    const running = broker;
    broker = undefined;
    await running?.[how]();
  };
  return {
    brokers,
    target: {
      name,
      component: 'kafka',
      kill: () => down('kill'),
      stop: () => down('stop'),
      start: async () => {
        await waitForPortFree(port);
        broker = await startKafkaBroker({ dataDir, port, controllerPort });
      },
    },
    teardown: () => down('kill'),
  };
}
