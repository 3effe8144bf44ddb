import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/platform/config.ts';
import { durabilityFor } from '../../src/platform/kafka/topics.ts';
import { envKafkaConfig } from '../../src/platform/service/service-config.ts';

describe('the Kafka settings of the relay and totals services', () => {
  it('leaves replication unset unless configured, and reads it when it is', () => {
    assert.deepEqual(
      { ...envKafkaConfig({}), kafkaBrokers: undefined, kafkaSecurity: undefined },
      { kafkaBrokers: undefined, kafkaSecurity: undefined, topicPartitions: 6, topicReplicationFactor: undefined, topicMinInsyncReplicas: undefined, publishTimeoutMs: 20_000 },
    );
    const config = envKafkaConfig({ KAFKA_REPLICATION_FACTOR: '3', KAFKA_MIN_INSYNC_REPLICAS: '2' });
    assert.equal(config.topicReplicationFactor, 3);
    assert.equal(config.topicMinInsyncReplicas, 2);
  });

  it('refuses a min.insync.replicas above the replication factor, naming both variables', () => {
    assert.throws(
      () => envKafkaConfig({ KAFKA_REPLICATION_FACTOR: '2', KAFKA_MIN_INSYNC_REPLICAS: '3' }),
      (error: unknown) => error instanceof ConfigError && /KAFKA_MIN_INSYNC_REPLICAS/.test(error.message) && /KAFKA_REPLICATION_FACTOR/.test(error.message),
    );
  });

  it('refuses values that are not positive whole numbers, naming the variable', () => {
    for (const [name, value] of [['KAFKA_REPLICATION_FACTOR', '0'], ['KAFKA_REPLICATION_FACTOR', 'three'], ['KAFKA_MIN_INSYNC_REPLICAS', '-1']] as const) {
      assert.throws(() => envKafkaConfig({ [name]: value }), (error: unknown) => error instanceof ConfigError && error.message.startsWith(name));
    }
  });

  it('chooses unset replication by the cluster size: 3 and 2 from three brokers, one per broker below', () => {
    assert.deepEqual(durabilityFor({ partitions: 1 }, 1), { replicationFactor: 1, minInsyncReplicas: 1 });
    assert.deepEqual(durabilityFor({ partitions: 1 }, 2), { replicationFactor: 2, minInsyncReplicas: 1 });
    assert.deepEqual(durabilityFor({ partitions: 1 }, 3), { replicationFactor: 3, minInsyncReplicas: 2 });
    assert.deepEqual(durabilityFor({ partitions: 1 }, 9), { replicationFactor: 3, minInsyncReplicas: 2 });
    assert.deepEqual(durabilityFor({ partitions: 1, replicationFactor: 5 }, 9), { replicationFactor: 5, minInsyncReplicas: 2 });
    assert.deepEqual(durabilityFor({ partitions: 1, minInsyncReplicas: 3 }, 9), { replicationFactor: 3, minInsyncReplicas: 3 });
  });

  it('refuses a configured min.insync.replicas above the replication factor chosen for a small cluster', () => {
    assert.throws(
      () => durabilityFor({ partitions: 1, minInsyncReplicas: 2 }, 1),
      (error: unknown) => error instanceof ConfigError && /KAFKA_MIN_INSYNC_REPLICAS \(2\)/.test(error.message) && /KAFKA_REPLICATION_FACTOR/.test(error.message),
    );
  });
});
