import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { RunComponent } from '../../src/cli/run-state.ts';
import { kafkaConnectionOptions } from '../../src/cli/status-kafka.ts';
import {
  brokerStatus,
  connectStatus,
  consumerLag,
  exitCodeFor,
  formatStatus,
  portsStatus,
  postgresStatus,
  serviceStatus,
  type KafkaMetadata,
  type StatusReport,
} from '../../src/cli/status-report.ts';
import { gradeCaptureSlot } from '../../src/outbox/capture-slot.ts';

const calculator: RunComponent = { name: 'calculator-1', role: 'calculator', pid: 100, ports: [19091, 18091], healthUrl: 'http://127.0.0.1:18091/readyz' };
const broker = (id: number, pid: number | null = 200 + id): RunComponent => ({ name: `kafka-${id}`, role: 'kafka-broker', pid, ports: [9091 + id], brokerId: id });
const metadata: KafkaMetadata = {
  brokerIds: [1, 2, 3],
  partitions: [
    { partition: 0, leader: 1, replicas: [1, 2, 3], isr: [1, 2, 3] },
    { partition: 1, leader: 2, replicas: [2, 3, 1], isr: [2, 1] },
    { partition: 2, leader: 3, replicas: [3, 1, 2], isr: [3, 1, 2] },
    { partition: 3, leader: 1, replicas: [1, 3, 2], isr: [1, 2] },
  ],
};

describe('summa status: health decisions', () => {
  it('a service is healthy only while its process lives and its readiness answers 200', () => {
    assert.deepEqual(
      { healthy: serviceStatus(calculator, true, { status: 200 }).healthy, detail: serviceStatus(calculator, true, { status: 200 }).detail },
      { healthy: true, detail: 'ready' },
    );
    const notReady = serviceStatus(calculator, true, { status: 503, reason: 'consumer stalled on partition 2' });
    assert.equal(notReady.healthy, false);
    assert.equal(notReady.detail, 'not ready (HTTP 503: consumer stalled on partition 2)');
    assert.equal(serviceStatus(calculator, true, { reason: 'connection refused' }).detail, 'readiness check failed: connection refused');
    // Something else answering on a dead process's port does not make it healthy.
    const dead = serviceStatus(calculator, false, { status: 200 });
    assert.deepEqual([dead.healthy, dead.detail], [false, 'process 100 is not running']);
    const restarting = serviceStatus({ ...calculator, pid: null }, null, { status: 200 });
    assert.deepEqual([restarting.healthy, restarting.detail], [false, 'no process (being restarted)']);
  });

  it('a broker tells the partitions it leads and those it is out of sync on', () => {
    const one = brokerStatus(broker(1), true, true, metadata);
    assert.deepEqual([one.healthy, one.leads, one.outOfSync, one.detail], [true, [0, 3], [], 'leads 0,3']);
    const three = brokerStatus(broker(3), true, true, metadata);
    assert.deepEqual([three.healthy, three.leads, three.outOfSync, three.detail], [true, [2], [1, 3], 'leads 2; out of sync on 1,3']);
  });

  it('a broker is down when its process is gone, its port is closed, or the cluster does not know it', () => {
    assert.equal(brokerStatus(broker(1), false, true, metadata).detail, 'process 201 is not running');
    assert.equal(brokerStatus(broker(1), true, false, metadata).detail, 'port 9092 does not accept connections');
    const unknown = brokerStatus(broker(4), true, true, metadata);
    assert.deepEqual([unknown.healthy, unknown.detail], [false, 'broker 4 is not in the cluster metadata']);
    const noMetadata = brokerStatus(broker(1), true, true, { error: 'Cannot connect to any broker.' });
    assert.deepEqual([noMetadata.healthy, noMetadata.detail], [false, 'cluster metadata unavailable: Cannot connect to any broker.']);
  });

  it('a primary lists its replicas with their lag; a replica must still be in recovery', () => {
    const primary: RunComponent = { name: 'postgres-primary', role: 'postgres-primary', pid: 300, ports: [55432] };
    const replica: RunComponent = { name: 'postgres-replica', role: 'postgres-replica', pid: 301, ports: [55433] };
    const replicas = [{ name: 'replica1', state: 'streaming', lagBytes: 2048, replayLagSeconds: 0.25 }];
    const p = postgresStatus(primary, true, { ok: true, inRecovery: false, replicas, lagBytes: null, lagSeconds: null, streaming: null });
    assert.deepEqual([p.healthy, p.detail, p.replicas], [true, 'accepting queries; replica1 2.0 KiB behind', replicas]);
    const r = postgresStatus(replica, true, { ok: true, inRecovery: true, replicas: [], lagBytes: 0, lagSeconds: 1.5, streaming: true });
    assert.deepEqual([r.healthy, r.lagBytes, r.lagSeconds, r.detail], [true, 0, 1.5, '0 B behind, data at most 1.5 s old']);
    const promoted = postgresStatus(replica, true, { ok: true, inRecovery: false, replicas: [], lagBytes: null, lagSeconds: null, streaming: null });
    assert.equal(promoted.healthy, false);
    assert.match(promoted.detail, /promoted/);
    const down = postgresStatus(primary, true, { ok: false, error: 'connect ECONNREFUSED 127.0.0.1:55432' });
    assert.deepEqual([down.healthy, down.detail], [false, 'cannot query: connect ECONNREFUSED 127.0.0.1:55432']);
  });

  it('nginx is healthy when every port it should listen on takes connections', () => {
    const nginx: RunComponent = { name: 'nginx', role: 'nginx', pid: 400, ports: [9090, 8090, 8080] };
    assert.equal(portsStatus(nginx, true, []).healthy, true);
    assert.deepEqual([portsStatus(nginx, true, [8080]).healthy, portsStatus(nginx, true, [8080]).detail], [false, 'port 8080 does not accept connections']);
    assert.equal(portsStatus(nginx, true, [8090, 8080]).detail, 'ports 8090,8080 do not accept connections');
  });

  it('Kafka Connect is healthy while its connector and every task run, and says so', () => {
    const connect: RunComponent = { name: 'kafka-connect', role: 'kafka-connect', pid: 500, ports: [8083], healthUrl: 'http://127.0.0.1:8083/connectors/summa-outbox/status' };
    const running = connectStatus(connect, true, { ok: true, name: 'summa-outbox', registered: true, connector: 'RUNNING', tasks: [{ id: 0, state: 'RUNNING' }] });
    assert.deepEqual([running.healthy, running.detail], [true, 'connector summa-outbox RUNNING, task 0 RUNNING']);
    const failed = connectStatus(connect, true, { ok: true, name: 'summa-outbox', registered: true, connector: 'RUNNING', tasks: [{ id: 0, state: 'FAILED' }] });
    assert.deepEqual([failed.healthy, failed.detail], [false, 'connector summa-outbox RUNNING, task 0 FAILED (its replication slot holds WAL meanwhile)']);
    const missing = connectStatus(connect, true, { ok: true, name: 'summa-outbox', registered: false, tasks: [] });
    assert.deepEqual([missing.healthy, missing.detail], [false, 'connector summa-outbox is not registered']);
    assert.equal(connectStatus(connect, false, { ok: false, error: 'connection refused' }).detail, 'process 500 is not running');
    assert.equal(connectStatus(connect, true, { ok: false, error: 'connection refused' }).detail, 'REST API does not answer: connection refused');
  });
});

describe('summa status: consumer lag', () => {
  it('is the high watermark minus the committed offset, from the earliest offset where the group committed none', () => {
    const lag = consumerLag([2, 0, 1], {
      ends: new Map([[1, 50n], [0, 10n], [2, 7n]]),
      committed: new Map([[0, 4n], [1, -1n]]),
      earliest: new Map([[0, 0n], [1, 20n], [2, 0n]]),
      failures: new Map(),
    });
    assert.deepEqual(lag, [
      { partition: 0, committed: 4, end: 10, lag: 6 },
      { partition: 1, committed: null, end: 50, lag: 30 },
      { partition: 2, committed: null, end: 7, lag: 7 },
    ]);
  });

  it('is unknown, with the reason, for a partition whose leader did not answer', () => {
    const lag = consumerLag([0, 1], {
      ends: new Map([[0, 10n]]),
      committed: new Map([[0, 10n], [1, 3n]]),
      earliest: new Map([[0, 0n]]),
      failures: new Map([[1, 'leader 2: Cannot connect to any broker.']]),
    });
    assert.deepEqual(lag, [
      { partition: 0, committed: 10, end: 10, lag: 0 },
      { partition: 1, committed: 3, end: null, lag: null, error: 'leader 2: Cannot connect to any broker.' },
    ]);
    const text = formatStatus({
      topology: 'cluster',
      dataDir: '/d',
      startedAt: 'now',
      launcher: { pid: 1, alive: true },
      healthy: true,
      components: [],
      consumerGroup: 'g',
      topic: 't',
      consumerLag: lag,
      partitions: [],
      retention: [],
      warnings: [],
    });
    assert.match(text, /Consumer lag \(group g\): 0 records \(not counting the partitions whose offsets are unknown\)\n/);
    assert.match(text, /partition 1: committed 3, end and lag unknown: leader 2: Cannot connect to any broker\.$/);
  });
});

describe('summa status: the report', () => {
  const report = (overrides: Partial<StatusReport> = {}): StatusReport => ({
    topology: 'cluster',
    dataDir: '/srv/summa/.data',
    startedAt: '2026-12-02T01:00:00.000Z',
    launcher: { pid: 10, alive: true },
    healthy: true,
    components: [serviceStatus(calculator, true, { status: 200 }), brokerStatus(broker(1), true, true, metadata), brokerStatus(broker(3), true, true, metadata)],
    consumerGroup: 'summa-totals',
    topic: 'summa-sums',
    consumerLag: [
      { partition: 0, committed: 4, end: 10, lag: 6 },
      { partition: 1, committed: null, end: 0, lag: 0 },
    ],
    partitions: metadata.partitions,
    retention: [],
    warnings: [],
    ...overrides,
  });

  it('exits 0 when everything is healthy and 1 when anything is not', () => {
    assert.equal(exitCodeFor(report()), 0);
    assert.equal(exitCodeFor(report({ healthy: false })), 1);
  });

  it('exits 4 on a warning, but 1 when something is also unhealthy: a warning never hides a failure', () => {
    assert.equal(exitCodeFor(report({ warnings: ['replication slot summa_outbox does not exist'] })), 4);
    assert.equal(exitCodeFor(report({ healthy: false, warnings: ['replication slot summa_outbox does not exist'] })), 1);
  });

  it("prints the capture slot's line and its warnings under the health line", () => {
    const captureSlot = {
      name: 'summa_outbox',
      ...gradeCaptureSlot(
        { exists: true, active: false, retainedBytes: 3 * 1024 ** 3, unconfirmedBytes: 3 * 1024 ** 3, inactiveSeconds: 900, walStatus: 'extended' },
        { slotName: 'summa_outbox', maxRetainedBytes: 1024 ** 3, maxInactiveSeconds: 300 },
      ),
    };
    const text = formatStatus(report({ captureSlot, warnings: captureSlot.warnings }));
    assert.match(text, /\nall components healthy\nWARNING: slot summa_outbox inactive for more than 5 min .*\nWARNING: slot summa_outbox retains more than 1.00 GiB of WAL \(CAPTURE_SLOT_MAX_RETAINED_MB\)\n/);
    assert.match(text, /\nChange data capture:\n  slot summa_outbox: INACTIVE for 15 min, retains 3.00 GiB of WAL, 3.00 GiB not yet confirmed by the connector — WARNING: /);
    assert.doesNotMatch(formatStatus(report()), /Change data capture|WARNING/);
  });

  it('prints a table of the components, then brokers, replication and consumer lag', () => {
    const text = formatStatus(report());
    assert.match(text, /^summa cluster started 2026-12-02T01:00:00.000Z by launcher pid 10; data \/srv\/summa\/.data\nall components healthy\n/);
    assert.ok(
      text.includes(
        [
          'ROLE          NAME          PID  PORTS        HEALTH  DETAIL',
          'calculator    calculator-1  100  19091,18091  ok      ready',
          'kafka-broker  kafka-1       201  9092         ok      leads 0,3',
          'kafka-broker  kafka-3       203  9094         ok      leads 2; out of sync on 1,3',
        ].join('\n'),
      ),
      text,
    );
    assert.doesNotMatch(text, /PostgreSQL replication/, 'no section for what the run does not have');
    assert.match(text, /kafka-3 {2}id 3 {2}up {2}leads partitions 2; out of sync on 1,3/);
    assert.match(text, /partition 1: leader 2, in sync \[2,1\] of replicas \[2,3,1\]/);
    assert.match(text, /Consumer lag \(group summa-totals\): 6 records\n {2}partition 0: committed 4, end 10, lag 6\n {2}partition 1: committed none, end 0, lag 0$/);
    assert.doesNotMatch(text, / +\n/, 'no line ends in spaces');
  });

  it('names what is unhealthy, a launcher that is gone, and Kafka figures it could not get', () => {
    const text = formatStatus(
      report({
        healthy: false,
        launcher: { pid: 10, alive: false },
        components: [serviceStatus(calculator, false, {})],
        consumerLag: [],
        partitions: [],
        kafkaError: 'Cannot connect to any broker.',
      }),
    );
    assert.match(text, /launcher pid 10 \(NOT RUNNING/);
    assert.match(text, /\nUNHEALTHY: calculator-1\n/);
    assert.match(text, /calculator-1 .* DOWN {4}process 100 is not running/);
    assert.match(text, /unavailable: Cannot connect to any broker\./);
    assert.match(text, /Consumer lag \(group summa-totals\): unknown/);
  });
});

describe('summa status: Kafka client security', () => {
  it('reads the run state\'s SASL/TLS settings as a service reads its KAFKA_* variables', () => {
    assert.deepEqual(kafkaConnectionOptions(undefined), {});
    assert.deepEqual(kafkaConnectionOptions({ securityProtocol: 'PLAINTEXT' }), {});
    const dir = mkdtempSync(path.join(os.tmpdir(), 'summa-status-'));
    try {
      const pem = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
      writeFileSync(path.join(dir, 'password'), ' secret \n', { mode: 0o600 });
      writeFileSync(path.join(dir, 'ca.pem'), pem);
      assert.deepEqual(
        kafkaConnectionOptions({
          securityProtocol: 'SASL_SSL',
          saslMechanism: 'SCRAM-SHA-256',
          username: 'summa-admin',
          passwordFile: path.join(dir, 'password'),
          caFile: path.join(dir, 'ca.pem'),
        }),
        { tls: { ca: Buffer.from(pem) }, sasl: { mechanism: 'SCRAM-SHA-256', username: 'summa-admin', password: ' secret ' } },
      );
      assert.throws(
        () => kafkaConnectionOptions({ securityProtocol: 'SASL_SSL', saslMechanism: 'KERBEROS', username: 'summa-admin', passwordFile: path.join(dir, 'password') }),
        /KAFKA_SASL_MECHANISM must be one of/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
