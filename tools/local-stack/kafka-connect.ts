// Kafka Connect in distributed mode with Debezium's PostgreSQL connector: the change-data-capture
// relay (RELAY_MODE=debezium). It takes the outbox's inserts off PostgreSQL's write-ahead log and
// publishes each as the very record the poller relay (src/outbox/outbox-relay.ts) would: same topic,
// key, value bytes and headers, so the totals service reads and deduplicates both alike.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { OUTBOX_PUBLICATION } from '../../src/outbox/outbox-capture.ts';
import { freePort, HOST, launchJvm, prepareKafkaJvm, tail } from './kafka-jvm.ts';
import { renderProperties } from './kafka-properties.ts';

const CONNECT_POM = fileURLToPath(new URL('./kafka-connect/pom.xml', import.meta.url));
/** A JVM with some 70 jars on a shared 2-core machine: the worker's first start is slow. */
const READY_TIMEOUT_MS = 180_000;
const RUNNING_TIMEOUT_MS = 120_000;

export interface KafkaConnectOptions {
  /** Its config, log4j config, logs and cached classpath live here. Its state lives in Kafka. */
  dataDir: string;
  /** The broker(s), "host:port,…". */
  brokers: string;
  /** REST port on 127.0.0.1; 0 (the default) picks a free one. */
  restPort?: number;
  /** The worker group, which also names its internal topics; default "summa-connect". */
  groupId?: string;
  /** Default 256. */
  heapMb?: number;
  readyTimeoutMs?: number;
}

export interface ConnectorState {
  /** RUNNING, PAUSED, FAILED, UNASSIGNED, …; "MISSING" when no such connector is registered. */
  connector: string;
  /** Each task's state, in task id order; a failed task's trace in `trace`. */
  tasks: { id: number; state: string; trace?: string }[];
  trace?: string;
}

export interface KafkaConnect {
  /** "http://127.0.0.1:PORT". */
  readonly restUrl: string;
  readonly restPort: number;
  /** The JVM's pid. */
  readonly pid: number;
  readonly logFile: string;
  /** Creates the connector or updates its config (PUT /connectors/{name}/config). */
  putConnector(name: string, config: Record<string, string>): Promise<void>;
  connectorState(name: string): Promise<ConnectorState>;
  /** Resolves once the connector and all its tasks are RUNNING; rejects on FAILED or after `timeoutMs`. */
  waitUntilRunning(name: string, timeoutMs?: number): Promise<ConnectorState>;
  deleteConnector(name: string): Promise<void>;
  /** SIGTERM (the worker leaves its group, committing offsets), SIGKILL after 20 s. */
  stop(): Promise<void>;
  /** SIGKILL, for fault tests. */
  kill(): Promise<void>;
}

/**
 * Starts a Kafka Connect worker in distributed mode, its jars (Connect and Debezium's PostgreSQL
 * connector) resolved by Maven from tools/local-stack/kafka-connect/pom.xml. Resolves once its REST
 * API answers and the worker has joined its group.
 */
export async function startKafkaConnect(options: KafkaConnectOptions): Promise<KafkaConnect> {
  const dataDir = path.resolve(options.dataDir);
  const logDir = path.join(dataDir, 'logs');
  await mkdir(logDir, { recursive: true });
  const jvm = await prepareKafkaJvm({ dataDir, logDir, heapMb: options.heapMb ?? 256, pom: CONNECT_POM });
  const restPort = options.restPort || (await freePort());
  const restUrl = `http://${HOST}:${restPort}`;
  const workerProperties = path.join(dataDir, 'connect-distributed.properties');
  await writeFile(workerProperties, renderWorkerProperties({ brokers: options.brokers, restPort, groupId: options.groupId ?? 'summa-connect' }));

  const logFile = path.join(logDir, 'connect.log');
  const timeoutMs = options.readyTimeoutMs ?? READY_TIMEOUT_MS;
  const worker = await launchJvm(jvm, {
    mainClass: 'org.apache.kafka.connect.cli.ConnectDistributed',
    args: [workerProperties],
    logFile,
    waitUntilReady: (child, exited) => waitUntilJoined(restUrl, timeoutMs, child, exited, logFile),
  });

  const connect: KafkaConnect = {
    restUrl,
    restPort,
    pid: worker.pid,
    logFile,
    putConnector: async (name, config) => {
      // A worker that is rebalancing answers 409; it settles within seconds.
      await retryWhile(
        () => rest(restUrl, 'PUT', `/connectors/${encodeURIComponent(name)}/config`, config),
        (error) => error instanceof ConnectRestError && error.status === 409,
        60_000,
      );
    },
    connectorState: (name) => connectorState(restUrl, name),
    waitUntilRunning: async (name, runningTimeoutMs = RUNNING_TIMEOUT_MS) => {
      const deadline = Date.now() + runningTimeoutMs;
      let state: ConnectorState | undefined;
      for (;;) {
        state = await connectorState(restUrl, name).catch(() => undefined);
        if (state) {
          const failed = state.connector === 'FAILED' ? state : state.tasks.find((task) => task.state === 'FAILED');
          if (failed) {
            throw new Error(`connector ${name} FAILED: ${failed.trace?.split('\n').slice(0, 8).join('\n')}\nsee ${logFile}`);
          }
          if (state.connector === 'RUNNING' && state.tasks.length > 0 && state.tasks.every((task) => task.state === 'RUNNING')) return state;
        }
        if (Date.now() > deadline) {
          throw new Error(`connector ${name} not RUNNING within ${runningTimeoutMs / 1000}s (last state: ${JSON.stringify(state)}); see ${logFile}:\n${await tail(logFile)}`);
        }
        await sleep(500);
      }
    },
    deleteConnector: async (name) => {
      await rest(restUrl, 'DELETE', `/connectors/${encodeURIComponent(name)}`).catch((error: unknown) => {
        if (!(error instanceof ConnectRestError && error.status === 404)) throw error;
      });
    },
    stop: () => worker.stop(),
    kill: () => worker.kill(),
  };
  return connect;
}

export interface OutboxConnectorOptions {
  /** The calculator's database. */
  database: { host: string; port: number; user: string; password: string; name: string };
  /** The logical replication slot; it holds WAL on disk while the connector is down. */
  slotName?: string;
  publicationName?: string;
  /** Debezium's prefix for its own topics (the table's change topic, which the router renames). */
  topicPrefix?: string;
}

/**
 * The Debezium PostgreSQL connector's config for the outbox. The records it writes are the poller
 * relay's (see recordOf in src/outbox/outbox-relay.ts):
 * - topic: the row's `topic` column (the event router routes by capture_topic, the topic marked
 *   "#traced" for a traced row, and the mark is taken off again);
 * - key: `message_key` and value: `payload`, both as the column's text in UTF-8 (string converters;
 *   the payload is not parsed, so its bytes are the calculator's);
 * - headers: `summa-event-id` (the row's `event_id`), `content-type: application/json` and, for a
 *   traced row only, its `traceparent`; the router's own `id` header and Debezium's context headers,
 *   which the poller does not write, are left out.
 */
export function outboxConnectorConfig(options: OutboxConnectorOptions): Record<string, string> {
  const { database } = options;
  const stringConverter = 'org.apache.kafka.connect.storage.StringConverter';
  return {
    'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'tasks.max': '1',
    'plugin.name': 'pgoutput',
    'database.hostname': database.host,
    'database.port': String(database.port),
    'database.user': database.user,
    'database.password': database.password,
    'database.dbname': database.name,
    'topic.prefix': options.topicPrefix ?? 'summa-cdc',
    'slot.name': options.slotName ?? 'summa_outbox',
    'publication.name': options.publicationName ?? OUTBOX_PUBLICATION,
    // The publication is made beforehand, inserts of the outbox only (ensureOutboxPublication).
    'publication.autocreate.mode': 'disabled',
    'table.include.list': 'calculator.outbox',
    // Rows already in the outbox when capture starts are the poller's to publish: a snapshot would
    // hand them to the router as reads, which it does not route.
    'snapshot.mode': 'no_data',
    'skipped.operations': 'u,d,t',
    // How long the task waits for more changes before it hands a batch to Connect when the queue
    // runs dry, 500 ms by default: at rest every event waited for it. A full batch goes at once.
    'poll.interval.ms': '10',
    'tombstones.on.delete': 'false',
    'key.converter': stringConverter,
    'value.converter': stringConverter,
    'header.converter': 'org.apache.kafka.connect.storage.SimpleHeaderConverter',
    // Debezium's own context headers (__debezium.context.*), which the poller does not write.
    'extended.headers.enabled': 'false',
    transforms: 'outbox,untraced,unmark,contentType,dropRouterId',
    'transforms.outbox.type': 'io.debezium.transforms.outbox.EventRouter',
    'transforms.outbox.table.field.event.id': 'event_id',
    'transforms.outbox.table.field.event.key': 'message_key',
    'transforms.outbox.table.field.event.payload': 'payload',
    'transforms.outbox.table.expand.json.payload': 'false',
    // The topic, marked "#traced" when the row has a traceparent (migration 004).
    'transforms.outbox.route.by.field': 'capture_topic',
    'transforms.outbox.route.topic.replacement': '${routedByValue}',
    'transforms.outbox.table.fields.additional.placement': 'event_id:header:summa-event-id,traceparent:header:traceparent',
    // An untraced row's traceparent is null, which would still be a header: dropped unless marked.
    'transforms.untraced.type': 'org.apache.kafka.connect.transforms.DropHeaders',
    'transforms.untraced.headers': 'traceparent',
    'transforms.untraced.predicate': 'traced',
    'transforms.untraced.negate': 'true',
    'transforms.unmark.type': 'org.apache.kafka.connect.transforms.RegexRouter',
    'transforms.unmark.regex': '(.*)#traced',
    'transforms.unmark.replacement': '$1',
    predicates: 'traced',
    'predicates.traced.type': 'org.apache.kafka.connect.transforms.predicates.TopicNameMatches',
    'predicates.traced.pattern': '.*#traced',
    'transforms.contentType.type': 'org.apache.kafka.connect.transforms.InsertHeader',
    'transforms.contentType.header': 'content-type',
    'transforms.contentType.value.literal': 'application/json',
    'transforms.dropRouterId.type': 'org.apache.kafka.connect.transforms.DropHeaders',
    'transforms.dropRouterId.headers': 'id',
  };
}

function renderWorkerProperties(p: { brokers: string; restPort: number; groupId: string }): string {
  return renderProperties(
    {
      'bootstrap.servers': p.brokers,
      'group.id': p.groupId,
      // Connect keeps its configs, source offsets (the LSN flushed) and states in these topics; one
      // broker holds one replica.
      'config.storage.topic': `${p.groupId}-configs`,
      'offset.storage.topic': `${p.groupId}-offsets`,
      'status.storage.topic': `${p.groupId}-status`,
      'config.storage.replication.factor': 1,
      'offset.storage.replication.factor': 1,
      'status.storage.replication.factor': 1,
      'offset.storage.partitions': 1,
      'status.storage.partitions': 1,
      // The LSN Debezium confirms to the slot is the last one whose offset Connect flushed: after a
      // crash, capture replays from there (the consumer absorbs the duplicates). 1 s bounds the replay.
      'offset.flush.interval.ms': 1_000,
      'key.converter': 'org.apache.kafka.connect.storage.StringConverter',
      'value.converter': 'org.apache.kafka.connect.storage.StringConverter',
      // The tasks of a worker that vanished (killed, not stopped) wait this long for it to come back
      // before they are handed to another, 5 minutes by default: a worker restarted after a crash
      // would sit idle that long. Here one worker runs; its successor takes them at once.
      'scheduled.rebalance.max.delay.ms': 0,
      listeners: `http://${HOST}:${p.restPort}`,
      'rest.advertised.host.name': HOST,
      'rest.advertised.port': p.restPort,
      // The relay's promise (an acknowledged event survives the broker) carries over: every record
      // acknowledged by all in-sync replicas, without reordering on retries.
      'producer.acks': 'all',
      'producer.enable.idempotence': true,
      'producer.linger.ms': 5,
      'plugin.discovery': 'only_scan',
    },
    'tools/local-stack/kafka-connect.ts',
  );
}

class ConnectRestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ConnectRestError';
  }
}

async function rest(restUrl: string, method: string, route: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${restUrl}${route}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  if (!response.ok) throw new ConnectRestError(response.status, `Kafka Connect ${method} ${route}: ${response.status} ${text}`);
  return text ? (JSON.parse(text) as unknown) : undefined;
}

async function connectorState(restUrl: string, name: string): Promise<ConnectorState> {
  try {
    const status = (await rest(restUrl, 'GET', `/connectors/${encodeURIComponent(name)}/status`)) as {
      connector: { state: string; trace?: string };
      tasks: { id: number; state: string; trace?: string }[];
    };
    return {
      connector: status.connector.state,
      trace: status.connector.trace,
      tasks: [...status.tasks].sort((a, b) => a.id - b.id).map(({ id, state, trace }) => ({ id, state, trace })),
    };
  } catch (error) {
    if (error instanceof ConnectRestError && error.status === 404) return { connector: 'MISSING', tasks: [] };
    throw error;
  }
}

/**
 * The REST server answers GET / early in the start; the worker can take connectors once it has
 * joined its group and read its config topic, which GET /connectors waits for (it answers 5xx or
 * 409 until then).
 */
async function waitUntilJoined(restUrl: string, timeoutMs: number, child: ChildProcess, exited: Promise<void>, logFile: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let died = false;
  void exited.then(() => (died = true));
  let lastError: unknown;
  while (!died && Date.now() < deadline) {
    try {
      await rest(restUrl, 'GET', '/connectors');
      return;
    } catch (error) {
      lastError = error;
    }
    await Promise.race([exited, sleep(500)]);
  }
  const why = died
    ? `exited (code ${child.exitCode}, signal ${child.signalCode})`
    : `did not answer within ${timeoutMs / 1000}s (last error: ${String(lastError)})`;
  throw new Error(`Kafka Connect on ${restUrl} ${why}; see ${logFile}:\n${await tail(logFile)}`);
}

async function retryWhile<T>(work: () => Promise<T>, retriable: (error: unknown) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await work();
    } catch (error) {
      if (!retriable(error) || Date.now() > deadline) throw error;
      await sleep(500);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
