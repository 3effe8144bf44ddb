// The benchmark's load generator: gRPC Add, the same for the bare echo server (R1) and for the
// full pipeline (P). BENCH_MODE picks the load shape:
//   closed  BENCH_VUS callers back to back for BENCH_DURATION (the throughput ceiling)
//   open    BENCH_RATE calls per second for BENCH_DURATION, whether or not earlier ones finished
//           (latency without coordinated omission; k6 reports dropped_iterations if it cannot keep up)
//   fill    BENCH_ITERATIONS calls shared by BENCH_VUS callers (a backlog of known size)
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const MODE = __ENV.BENCH_MODE || 'closed';
const TARGET = __ENV.BENCH_TARGET || '127.0.0.1:9090';
const RUN_ID = __ENV.BENCH_RUN_ID || 'bench';
const DURATION = __ENV.BENCH_DURATION || '10s';
const VUS = Number(__ENV.BENCH_VUS || '64');

const shapes = {
  closed: { executor: 'constant-vus', vus: VUS, duration: DURATION, gracefulStop: '30s' },
  open: {
    executor: 'constant-arrival-rate',
    rate: Number(__ENV.BENCH_RATE || '100'),
    timeUnit: '1s',
    duration: DURATION,
    preAllocatedVUs: Number(__ENV.BENCH_PREALLOCATED_VUS || '64'),
    maxVUs: Number(__ENV.BENCH_MAX_VUS || '400'),
    gracefulStop: '30s',
  },
  fill: {
    executor: 'shared-iterations',
    vus: VUS,
    iterations: Number(__ENV.BENCH_ITERATIONS || '1000'),
    maxDuration: '10m',
  },
};
if (!shapes[MODE]) throw new Error(`unknown BENCH_MODE ${MODE}`);

export const options = {
  scenarios: { [MODE]: shapes[MODE] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(50)', 'p(90)', 'p(99)', 'max'],
};

const acked = new Counter('bench_acked');
const failed = new Counter('bench_failed');
const client = new grpc.Client();
client.load(['../../../proto'], 'summa/v1/calculator.proto');
let connected = false;
let sequence = 0;

export default function () {
  if (!connected) {
    client.connect(TARGET, { plaintext: true, timeout: '10s' });
    connected = true;
  }
  sequence += 1;
  const num1 = Math.floor(Math.random() * 2001) - 1000;
  const num2 = Math.floor(Math.random() * 2001) - 1000;
  const response = client.invoke(
    'summa.v1.CalculatorService/Add',
    { num1: String(num1), num2: String(num2), request_id: `b-${RUN_ID}-${__VU}-${sequence}` },
    { timeout: '10s' },
  );
  const ok = check(response, { 'Add is OK': (r) => r && r.status === grpc.StatusOK && r.message.sum === String(num1 + num2) });
  if (ok) acked.add(1);
  else failed.add(1);
}
