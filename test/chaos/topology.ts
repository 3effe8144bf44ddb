// What the chaos harness runs: how many instances of each service, how many Kafka brokers, whether
// PostgreSQL has a streaming replica for the totals' reads, and whether the clients reach the
// calculators through nginx or each one directly. The fault rounds, the clients and the audit are
// the same for every topology.
import type { ServiceName } from './processes.ts';

export type Component = 'calculator' | 'relay' | 'totals' | 'kafka' | 'postgres' | 'replica';

export interface ChaosTopology {
  /** Instances of each service, named e.g. totals-1, totals-2. */
  instances: Readonly<Record<ServiceName, number>>;
  /** Kafka brokers: one, or a KRaft cluster of three (each broker also a controller). */
  brokers: 1 | 3;
  /** Partitions of the event topic. */
  partitions: number;
  /** A streaming replica of PostgreSQL that the totals services read the total from. */
  replica: boolean;
  /** The clients send to nginx, which spreads the calls over the calculators; otherwise to each calculator in turn. */
  loadBalancer: boolean;
  /** Kafka with SASL_SSL (SCRAM) listeners and a user per service; otherwise plaintext. */
  kafkaSecurity: boolean;
}

/** `npm run chaos`: two instances of each service on one broker and one database. */
export const TWO_INSTANCES: ChaosTopology = Object.freeze({
  instances: Object.freeze({ calculator: 2, relay: 2, totals: 2 }),
  brokers: 1,
  partitions: 3,
  replica: false,
  loadBalancer: false,
  kafkaSecurity: false,
});

/** `npm run chaos -- --cluster`: the topology of `npm start -- --cluster` (issue #11). */
export const CLUSTER: ChaosTopology = Object.freeze({
  instances: Object.freeze({ calculator: 3, relay: 2, totals: 3 }),
  brokers: 3,
  partitions: 6,
  replica: true,
  loadBalancer: true,
  kafkaSecurity: true,
});

export const SERVICES: readonly ServiceName[] = ['calculator', 'relay', 'totals'];

/** calculator-1, calculator-2, relay-1, ... in start order (the first calculator creates the schemas). */
export function serviceInstances(topology: ChaosTopology): string[] {
  return SERVICES.flatMap((service) => Array.from({ length: topology.instances[service] }, (_, i) => `${service}-${i + 1}`));
}

/** The broker's fault target name: `kafka` alone, `kafka-1`... in a cluster (named by node id). */
export function brokerNames(topology: ChaosTopology): string[] {
  return topology.brokers === 1 ? ['kafka'] : Array.from({ length: topology.brokers }, (_, i) => `kafka-${i + 1}`);
}

/** Every component the topology has, each faulted at least once a round. */
export function componentsOf(topology: ChaosTopology): Component[] {
  return [...SERVICES.filter((service) => topology.instances[service] > 0), 'kafka', 'postgres', ...(topology.replica ? (['replica'] as const) : [])];
}

/** Every fault target's name: the service instances, the brokers, the database (and its replica). */
export function targetNames(topology: ChaosTopology): string[] {
  return [...serviceInstances(topology), ...brokerNames(topology), 'postgres', ...(topology.replica ? ['replica'] : [])];
}

export function componentOf(target: string): Component {
  const component = /^(calculator|relay|totals|kafka)(?:-\d+)?$/.exec(target)?.[1] ?? target;
  return component as Component;
}
