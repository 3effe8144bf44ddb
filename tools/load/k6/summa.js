// k6 load test of Summa: gRPC Add, HTTP POST /v1/sums and GET /total.
//
//   npm run loadtest -- <smoke|ramp|spike|mix>
//
// The scenario comes from SCENARIO; LOADTEST_DURATION_SCALE stretches or shrinks every stage
// (0.5 halves the run). The runner (tools/load/main.ts) passes a run id, so that request
// ids never repeat those of an earlier run, and checks the total afterwards.
import { add, readTotal, thinkTime } from './lib/summa-client.js';

const SCENARIO = __ENV.SCENARIO || 'smoke';
const SCALE = Number(__ENV.LOADTEST_DURATION_SCALE || '1');

function seconds(value) {
  return `${Math.max(1, Math.round(value * SCALE))}s`;
}

// An iteration can take up to 5 attempts of 10 s: VUs get that long to finish before k6 stops
// them, since an interrupted Add would leave its outcome unknown.
const GRACE = '70s';

const scenarios = {
  smoke: {
    executor: 'constant-vus',
    vus: 4,
    duration: seconds(10),
    gracefulStop: GRACE,
    exec: 'smoke',
  },
  ramp: {
    executor: 'ramping-vus',
    startVUs: 0,
    stages: [
      { duration: seconds(30), target: 200 },
      { duration: seconds(60), target: 1000 },
      { duration: seconds(60), target: 1000 },
      { duration: seconds(30), target: 0 },
    ],
    gracefulRampDown: GRACE,
    gracefulStop: GRACE,
    exec: 'ramp',
  },
  spike: {
    executor: 'ramping-vus',
    startVUs: 10,
    stages: [
      { duration: seconds(15), target: 10 },
      { duration: seconds(5), target: 600 },
      { duration: seconds(30), target: 600 },
      { duration: seconds(5), target: 10 },
      { duration: seconds(15), target: 10 },
    ],
    gracefulRampDown: GRACE,
    gracefulStop: GRACE,
    exec: 'spike',
  },
  mix: {
    executor: 'constant-vus',
    vus: 50,
    duration: seconds(120),
    gracefulStop: GRACE,
    exec: 'mix',
  },
};

// Latency limits per scenario (ms); a 2-core machine running the whole system and k6 is the
// reference. Correctness limits are the same everywhere.
const latency = {
  smoke: { p95: 300, p99: 1000 },
  ramp: { p95: 1000, p99: 2500 },
  spike: { p95: 1500, p99: 3000 },
  mix: { p95: 300, p99: 1000 },
};

function thresholds(name) {
  const { p95, p99 } = latency[name];
  const limits = [`p(95)<${p95}`, `p(99)<${p99}`];
  const rules = {
    summa_errors: [name === 'smoke' ? 'rate==0' : 'rate<0.01'],
    summa_unresolved_requests: ['count==0'],
    summa_wrong_answers: ['count==0'],
    checks: [name === 'smoke' ? 'rate==1' : 'rate>0.99'],
    'grpc_req_duration{endpoint:grpc_add}': limits,
  };
  if (name !== 'ramp') {
    rules['http_req_duration{endpoint:http_add}'] = limits;
    rules['http_req_duration{endpoint:total}'] = limits;
  }
  return rules;
}

if (!scenarios[SCENARIO]) {
  throw new Error(`unknown scenario ${JSON.stringify(SCENARIO)}; choose one of ${Object.keys(scenarios).join(', ')}`);
}

export const options = {
  scenarios: { [SCENARIO]: scenarios[SCENARIO] },
  thresholds: thresholds(SCENARIO),
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

/** One run id for all VUs (init code runs once per VU, setup once per run). */
export function setup() {
  return { runId: __ENV.SUMMA_LOADTEST_RUN_ID || `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}` };
}

/** Every endpoint, briefly. */
export function smoke(data) {
  const pick = Math.random();
  if (pick < 0.6) add('grpc', data.runId);
  else if (pick < 0.85) add('http', data.runId);
  else readTotal();
  thinkTime(0.02, 0.1);
}

/** Users that add over gRPC about once a second each, up to 1,000 of them. */
export function ramp(data) {
  add('grpc', data.runId);
  thinkTime(0.5, 1.5);
}

/** A sudden crowd of users on every endpoint. */
export function spike(data) {
  mixedCall(data.runId);
  thinkTime(0.2, 1);
}

/** A randomized mix of endpoints with think time, like people at a UI would. */
export function mix(data) {
  mixedCall(data.runId);
  thinkTime(0.1, 1);
}

function mixedCall(runId) {
  const pick = Math.random();
  if (pick < 0.55) add('grpc', runId);
  else if (pick < 0.8) add('http', runId);
  else readTotal();
}
