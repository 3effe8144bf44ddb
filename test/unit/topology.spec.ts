import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertDistinctPorts, planTopology, topologyPorts } from '../../tools/local-stack/topology.ts';

describe('the topologies npm start runs', () => {
  it('single-node: one of each, on the ports it always had', () => {
    const single = planTopology('single', {});
    assert.deepEqual(
      single.services.map((s) => [s.name, s.ports]),
      [
        ['calculator', [9090, 8090]],
        ['relay', [8091]],
        ['totals', [8080]],
      ],
    );
    assert.deepEqual(single.kafka, [{ nodeId: 1, port: 9092, controllerPort: 9093 }]);
    assert.deepEqual(single.postgres, { port: 55432 });
    assert.equal(single.nginx, undefined);
  });

  it('single-node: each *_PORT variable still sets its port', () => {
    const single = planTopology('single', { CALCULATOR_GRPC_PORT: '7000', TOTALS_HTTP_PORT: '7001', SUMMA_KAFKA_PORT: '7002' });
    assert.deepEqual(single.services[0]!.env, { CALCULATOR_GRPC_PORT: '7000', CALCULATOR_HTTP_PORT: '8090' });
    assert.deepEqual(single.entryPoints, { grpc: 7000, calculatorHttp: 8090, totalsHttp: 7001 });
    assert.equal(single.kafka[0]!.port, 7002);
  });

  it('cluster: nginx on the single-node ports over 3 calculators and 3 totals, 2 relays, 3 brokers, a replica', () => {
    const cluster = planTopology('cluster', {});
    assert.deepEqual(cluster.nginx, {
      grpcPort: 9090,
      httpPort: 8090,
      totalsPort: 8080,
      calculatorGrpcPorts: [19091, 19092, 19093],
      calculatorHttpPorts: [18091, 18092, 18093],
      totalsHttpPorts: [18081, 18082, 18083],
    });
    assert.deepEqual(
      cluster.services.map((s) => `${s.role}:${s.name}:${s.ports.join('/')}`),
      [
        'calculator:calculator-1:19091/18091',
        'calculator:calculator-2:19092/18092',
        'calculator:calculator-3:19093/18093',
        'relay:relay-1:8091',
        'relay:relay-2:8092',
        'totals:totals-1:18081',
        'totals:totals-2:18082',
        'totals:totals-3:18083',
      ],
    );
    assert.deepEqual(cluster.services[1]!.env, { CALCULATOR_GRPC_PORT: '19092', CALCULATOR_HTTP_PORT: '18092' });
    assert.deepEqual(cluster.kafka.map((b) => [b.nodeId, b.port, b.controllerPort]), [
      [1, 9092, 29092],
      [2, 9093, 29093],
      [3, 9094, 29094],
    ]);
    assert.deepEqual(cluster.postgres, { port: 55432, replicaPort: 55433 });
    assertDistinctPorts(cluster);
  });

  it('SUMMA_PORT_OFFSET moves every default port, within the port range', () => {
    const plain = topologyPorts(planTopology('cluster', {}));
    const moved = topologyPorts(planTopology('cluster', { SUMMA_PORT_OFFSET: '1000' }));
    assert.deepEqual(moved, plain.map((port) => port + 1000));
    assert.equal(Math.max(...topologyPorts(planTopology('cluster', { SUMMA_PORT_OFFSET: '10102' }))), 65535);
    assert.throws(() => planTopology('cluster', { SUMMA_PORT_OFFSET: '10103' }), /SUMMA_PORT_OFFSET must be between 0 and 10102, got 10103/);
    assert.throws(() => planTopology('single', { SUMMA_PORT_OFFSET: 'ten' }), /SUMMA_PORT_OFFSET must be a whole number/);
  });

  it('two parts on one port are refused, naming the port', () => {
    assert.throws(() => assertDistinctPorts(planTopology('single', { RELAY_HTTP_PORT: '8080' })), /port 8080 is given to two parts of the single topology/);
  });
});
