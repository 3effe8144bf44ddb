// The server.properties settings the single broker and the nodes of a cluster have in common.

type Settings = Record<string, string | number | boolean>;

/** A server.properties file's text. */
export function renderProperties(settings: Settings, writtenBy: string): string {
  const lines = Object.entries(settings).map(([key, value]) => `${key}=${value}`);
  return `# Written by ${writtenBy} on every start; edits are lost.\n${lines.join('\n')}\n`;
}

/**
 * Durability, topic defaults and failure detection for a cluster of `brokers` brokers (1 for the
 * single broker): topics and Kafka's internal state topics get min(3, brokers) replicas, of which 2
 * must have a record once there are 3.
 */
export function sharedBrokerSettings(p: { brokers: number; flushEveryRecord: boolean }): Settings {
  const replicas = Math.min(3, p.brokers);
  const minInsync = replicas >= 3 ? 2 : 1;
  return {
    'auto.create.topics.enable': false,
    'num.partitions': 1,
    'default.replication.factor': replicas,
    'min.insync.replicas': minInsync,
    // The relay deletes an event from the outbox once Kafka acknowledged it, so an acknowledged record
    // must survive whatever the outbox row would have. A cluster on several machines gets that from
    // acks=all with min.insync.replicas ≥ 2: a record acknowledged by two brokers survives one of them
    // losing power before its page cache reached the disk. A single broker has no other copy, and the
    // nodes of a local cluster share one machine, so one power loss takes every copy's page cache:
    // by default Kafka acknowledges a record while it is still only there. Flushing after every record
    // makes the ack mean "on disk".
    ...(p.flushEveryRecord ? { 'log.flush.interval.messages': 1 } : {}),
    'offsets.topic.replication.factor': replicas,
    // 50 by default; fewer makes the first group coordinator lookup and restarts quicker.
    'offsets.topic.num.partitions': 10,
    'transaction.state.log.replication.factor': replicas,
    'transaction.state.log.min.isr': minInsync,
    'transaction.state.log.num.partitions': 10,
    'share.coordinator.state.topic.replication.factor': replicas,
    'share.coordinator.state.topic.min.isr': minInsync,
    'group.initial.rebalance.delay.ms': 0,
    // After a SIGKILL the restarted broker cannot register until the controller has fenced its
    // previous incarnation, which takes broker.session.timeout.ms (default 9s); in a cluster, the
    // partitions a killed broker led move to another only once it is fenced.
    'broker.heartbeat.interval.ms': 1_000,
    'broker.session.timeout.ms': 5_000,
  };
}
