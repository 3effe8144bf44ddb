// What `npm start` runs, and on which ports: one of each part ('single', the default), or the
// scaled-out system of issue #11 ('cluster'). Pure data, so the launcher only starts what it says.
import type { ComponentRole } from '../../src/cli/run-state.ts';
import { ConfigError, envInteger, envPort, type Env } from '../../src/platform/config.ts';
import { DEFAULT_PORTS } from '../../src/platform/ports.ts';
import { portIsFree } from '../lib/free-port.ts';

export type TopologyName = 'single' | 'cluster';
export type ServiceRole = Extract<ComponentRole, 'calculator' | 'relay' | 'totals'>;

export interface ServiceInstance {
  /** Unique within the run: "calculator" in single-node mode, "calculator-2" in a cluster. */
  name: string;
  role: ServiceRole;
  /** Its compiled main module, relative to the project (run with plain node). */
  entry: string;
  /** The *_PORT variables it listens by. */
  env: Record<string, string>;
  /** Every port it listens on, the main one first. */
  ports: number[];
  /** Where /readyz and /metrics are. */
  httpPort: number;
}

export interface KafkaBrokerPlan {
  nodeId: number;
  port: number;
  controllerPort: number;
}

/** nginx's listeners, each spreading over the 127.0.0.1 ports of one group of services. */
export interface NginxPlan {
  grpcPort: number;
  httpPort: number;
  totalsPort: number;
  calculatorGrpcPorts: number[];
  calculatorHttpPorts: number[];
  totalsHttpPorts: number[];
}

export interface Topology {
  name: TopologyName;
  postgres: { port: number; replicaPort?: number };
  /** One broker in single-node mode, three in a cluster. */
  kafka: KafkaBrokerPlan[];
  services: ServiceInstance[];
  /** Where clients connect: the calculator's gRPC and HTTP ports and the totals REST port. */
  entryPoints: { grpc: number; calculatorHttp: number; totalsHttp: number };
  nginx?: NginxPlan;
}

/** The highest default port (the PostgreSQL replica's); an offset must keep it a port. */
const HIGHEST_DEFAULT_PORT = 55433;

/**
 * SUMMA_PORT_OFFSET, added to every default port, so that a second system (a test's) can run beside
 * the one `npm start` runs. Ports set by their own variable are taken as they are.
 */
export function envPortOffset(env: Env): number {
  return envInteger(env, 'SUMMA_PORT_OFFSET', 0, { min: 0, max: 65535 - HIGHEST_DEFAULT_PORT });
}

export function planTopology(name: TopologyName, env: Env): Topology {
  return name === 'cluster' ? planCluster(env) : planSingle(env);
}

function planSingle(env: Env): Topology {
  const offset = envPortOffset(env);
  const port = (variable: string, fallback: number) => envPort(env, variable, fallback + offset);
  const grpc = port('CALCULATOR_GRPC_PORT', DEFAULT_PORTS.calculatorGrpc);
  const calculatorHttp = port('CALCULATOR_HTTP_PORT', DEFAULT_PORTS.calculatorHttp);
  const relayHttp = port('RELAY_HTTP_PORT', DEFAULT_PORTS.relayHttp);
  const totalsHttp = port('TOTALS_HTTP_PORT', DEFAULT_PORTS.totalsHttp);
  return {
    name: 'single',
    postgres: { port: port('SUMMA_POSTGRES_PORT', 55432) },
    kafka: [{ nodeId: 1, port: port('SUMMA_KAFKA_PORT', 9092), controllerPort: port('SUMMA_KAFKA_CONTROLLER_PORT', 9093) }],
    services: [
      calculator('calculator', grpc, calculatorHttp),
      relay('relay', relayHttp),
      totals('totals', totalsHttp),
    ],
    entryPoints: { grpc, calculatorHttp, totalsHttp },
  };
}

export const CLUSTER_SIZE = Object.freeze({ calculators: 3, relays: 2, totals: 3, brokers: 3 });

function planCluster(env: Env): Topology {
  const offset = envPortOffset(env);
  const port = (variable: string, fallback: number) => envPort(env, variable, fallback + offset);
  const numbered = (count: number, first: number) => Array.from({ length: count }, (_, i) => first + i + offset);
  const calculatorGrpcPorts = numbered(CLUSTER_SIZE.calculators, 19091);
  const calculatorHttpPorts = numbered(CLUSTER_SIZE.calculators, 18091);
  const relayPorts = numbered(CLUSTER_SIZE.relays, 8091);
  const totalsHttpPorts = numbered(CLUSTER_SIZE.totals, 18081);
  const brokerPorts = numbered(CLUSTER_SIZE.brokers, 9092);
  const controllerPorts = numbered(CLUSTER_SIZE.brokers, 29092);
  // Clients reach the cluster where they reach a single node: nginx takes the single-node ports.
  const entryPoints = {
    grpc: port('CALCULATOR_GRPC_PORT', DEFAULT_PORTS.calculatorGrpc),
    calculatorHttp: port('CALCULATOR_HTTP_PORT', DEFAULT_PORTS.calculatorHttp),
    totalsHttp: port('TOTALS_HTTP_PORT', DEFAULT_PORTS.totalsHttp),
  };
  return {
    name: 'cluster',
    postgres: { port: port('SUMMA_POSTGRES_PORT', 55432), replicaPort: port('SUMMA_POSTGRES_REPLICA_PORT', 55433) },
    kafka: brokerPorts.map((brokerPort, i) => ({ nodeId: i + 1, port: brokerPort, controllerPort: controllerPorts[i]! })),
    services: [
      ...calculatorGrpcPorts.map((grpc, i) => calculator(`calculator-${i + 1}`, grpc, calculatorHttpPorts[i]!)),
      ...relayPorts.map((http, i) => relay(`relay-${i + 1}`, http)),
      ...totalsHttpPorts.map((http, i) => totals(`totals-${i + 1}`, http)),
    ],
    entryPoints,
    nginx: { grpcPort: entryPoints.grpc, httpPort: entryPoints.calculatorHttp, totalsPort: entryPoints.totalsHttp, calculatorGrpcPorts, calculatorHttpPorts, totalsHttpPorts },
  };
}

function calculator(name: string, grpc: number, http: number): ServiceInstance {
  return {
    name,
    role: 'calculator',
    entry: 'dist/calculator/main.js',
    env: { CALCULATOR_GRPC_PORT: String(grpc), CALCULATOR_HTTP_PORT: String(http) },
    ports: [grpc, http],
    httpPort: http,
  };
}

function relay(name: string, http: number): ServiceInstance {
  return { name, role: 'relay', entry: 'dist/relay/main.js', env: { RELAY_HTTP_PORT: String(http) }, ports: [http], httpPort: http };
}

function totals(name: string, http: number): ServiceInstance {
  return { name, role: 'totals', entry: 'dist/totals/main.js', env: { TOTALS_HTTP_PORT: String(http) }, ports: [http], httpPort: http };
}

/** Every port the topology listens on (for a test that looks for a free range, and for checks). */
export function topologyPorts(topology: Topology): number[] {
  const nginx = topology.nginx ? [topology.nginx.grpcPort, topology.nginx.httpPort, topology.nginx.totalsPort] : [];
  return [
    topology.postgres.port,
    ...(topology.postgres.replicaPort === undefined ? [] : [topology.postgres.replicaPort]),
    ...topology.kafka.flatMap((broker) => [broker.port, broker.controllerPort]),
    ...topology.services.flatMap((service) => service.ports),
    ...nginx,
  ];
}

/** A clear error for a topology whose ports collide (two variables set to one port). */
export function assertDistinctPorts(topology: Topology): void {
  const seen = new Set<number>();
  for (const port of topologyPorts(topology)) {
    if (port !== 0 && seen.has(port)) throw new ConfigError(`port ${port} is given to two parts of the ${topology.name} topology; set its variables apart`);
    seen.add(port);
  }
}

/**
 * A port offset under which every port of the cluster is free right now, so that a second cluster
 * (a test's, the benchmark's) runs beside an `npm start`.
 */
export async function freeClusterPortOffset(): Promise<{ offset: number; topology: Topology }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const offset = 1_000 + Math.floor(Math.random() * 9_000);
    const topology = planTopology('cluster', { SUMMA_PORT_OFFSET: String(offset) });
    if ((await Promise.all(topologyPorts(topology).map(portIsFree))).every(Boolean)) return { offset, topology };
  }
  throw new Error('found no port offset under which every port of the cluster is free');
}
