// The servers under the chaos harness's services: Kafka (one broker, or a cluster of three) and
// PostgreSQL (with a streaming replica or without), each a fault target that can be killed,
// stopped and started again on the same data and ports.
import path from 'node:path';
import type { BaseOptions } from '@platformatic/kafka';
import { startKafkaBroker, type KafkaBroker } from '../../tools/local-stack/kafka-broker.ts';
import { startPostgresReplica } from '../../tools/local-stack/postgres-replica.ts';
import { startPostgresServer, type PostgresServer } from '../../tools/local-stack/postgres-server.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { killPostgresCluster, waitForPortFree } from './processes.ts';
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
  /** The harness's own Kafka clients (the commit window's Admin): as the admin user. */
  kafkaBrokers: string[];
  kafkaConnection: Pick<BaseOptions, 'sasl' | 'tls' | 'tlsServerName'> | undefined;
  /** The brokers, the primary and the replica. */
  targets: FaultTarget[];
  /** Everything down, hard. */
  teardown(): Promise<void>;
}

export async function startChaosStack(topology: ChaosTopology, workDir: string, log: (line: string) => void): Promise<ChaosStack> {
  const teardowns: (() => Promise<void>)[] = [];
  const teardown = async () => {
    for (const down of teardowns.reverse()) await down().catch(() => {});
  };
  try {
    const postgres = await startPrimary(path.join(workDir, 'postgres'));
    teardowns.push(() => postgres.teardown());
    const targets: FaultTarget[] = [postgres.target];
    let readDatabaseUrl: string | undefined;
    if (topology.replica) {
      const replica = await startReplica(postgres.server, path.join(workDir, 'postgres-replica'));
      teardowns.push(() => replica.teardown());
      targets.push(replica.target);
      readDatabaseUrl = replica.url;
      log(`PostgreSQL replica on ${replica.port}`);
    }
    if (topology.brokers !== 1 || topology.kafkaSecurity) throw new Error('a Kafka cluster is not available to the chaos harness yet');
    const kafka = await startSingleBroker(path.join(workDir, 'kafka'), brokerNames(topology)[0]!);
    teardowns.push(() => kafka.teardown());
    targets.unshift(kafka.target);
    log(`PostgreSQL on ${postgres.port}, Kafka on ${kafka.brokers}`);
    return {
      databaseUrl: postgres.url,
      readDatabaseUrl,
      kafkaEnv: () => ({ KAFKA_BROKERS: kafka.brokers }),
      kafkaBrokers: [kafka.brokers],
      kafkaConnection: undefined,
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
