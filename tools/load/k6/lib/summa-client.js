// Calls to Summa's three endpoints, with the bookkeeping that lets the runner check the total
// exactly: every request id whose sum the system acknowledged is counted once, whatever number
// of attempts it took, and an id whose outcome stays unknown is counted as unresolved.
import grpc from 'k6/net/grpc';
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Rate } from 'k6/metrics';

export const targets = {
  grpc: __ENV.CALCULATOR_GRPC_ADDRESS || '127.0.0.1:9090',
  calculatorUrl: __ENV.CALCULATOR_URL || 'http://127.0.0.1:8090',
  totalsUrl: __ENV.TOTALS_URL || 'http://127.0.0.1:8080',
};

const ADD_METHOD = 'summa.v1.CalculatorService/Add';
const MAX_ATTEMPTS = 5;
const REQUEST_TIMEOUT = __ENV.LOADTEST_REQUEST_TIMEOUT || '10s';
/** Share of acknowledged requests sent once more, on purpose, with the same id. */
const DELIBERATE_RETRY_SHARE = Number(__ENV.LOADTEST_RETRY_SHARE || '0.1');
/** Numbers stay this small so that k6's float64 counters hold the run's sum exactly (below 2^53). */
const MAX_ABS_NUMBER = 1000;

// Counters are summed as float64: exact for integers below 2^53. Negative parts are kept apart
// because a counter only grows.
const acceptedRequests = new Counter('summa_accepted_requests');
const acceptedSumPositive = new Counter('summa_accepted_sum_positive');
const acceptedSumNegative = new Counter('summa_accepted_sum_negative');
const unresolvedRequests = new Counter('summa_unresolved_requests');
const wrongAnswers = new Counter('summa_wrong_answers');
const deliberateRetries = new Counter('summa_deliberate_retries');
const transientRetries = new Counter('summa_transient_retries');
const errors = new Rate('summa_errors');

// A client error means the request can never succeed; anything else may be retried with the same id.
const FINAL_GRPC_CODES = new Set([grpc.StatusInvalidArgument, grpc.StatusAlreadyExists, grpc.StatusOutOfRange]);

const calculator = new grpc.Client();
// Import paths resolve against the entry script's folder (loadtest/).
calculator.load(['../../../proto'], 'summa/v1/calculator.proto');
let connected = false;
let sequence = 0;

function smallNumber() {
  return Math.floor(Math.random() * (2 * MAX_ABS_NUMBER + 1)) - MAX_ABS_NUMBER;
}

function newRequestId(runId) {
  sequence += 1;
  return `lt-${runId}-${__VU}-${sequence}`;
}

/** One gRPC attempt: { ok, final, sum, replayed }. */
function grpcAttempt(requestId, num1, num2) {
  let response;
  try {
    if (!connected) {
      calculator.connect(targets.grpc, { plaintext: true, timeout: REQUEST_TIMEOUT });
      connected = true;
    }
    response = calculator.invoke(
      ADD_METHOD,
      { num1: String(num1), num2: String(num2), request_id: requestId },
      { timeout: REQUEST_TIMEOUT, tags: { endpoint: 'grpc_add' } },
    );
  } catch (error) {
    // Not connected, or the connection broke: the outcome is unknown, so it may be retried.
    connected = false;
    return { ok: false, final: false, status: String(error) };
  }
  if (response && response.status === grpc.StatusOK) {
    return { ok: true, sum: String(response.message.sum), replayed: response.message.replayed === true };
  }
  const status = response ? response.status : grpc.StatusUnknown;
  return { ok: false, final: FINAL_GRPC_CODES.has(status), status };
}

/** One HTTP attempt against POST /v1/sums. */
function httpAttempt(requestId, num1, num2) {
  const response = http.post(`${targets.calculatorUrl}/v1/sums`, JSON.stringify({ num1, num2 }), {
    headers: { 'content-type': 'application/json', 'idempotency-key': requestId },
    timeout: REQUEST_TIMEOUT,
    tags: { endpoint: 'http_add', name: 'POST /v1/sums' },
    responseCallback: http.expectedStatuses(200, 201),
  });
  if (response.status === 200 || response.status === 201) {
    const body = response.json();
    return { ok: true, sum: String(body.sum), replayed: body.replayed === true };
  }
  // 0 is a network error or timeout; 429 and 5xx may succeed later.
  const final = response.status >= 400 && response.status < 500 && response.status !== 429;
  return { ok: false, final, status: response.status };
}

/** Attempts until the system answers; returns the answer, or undefined when the outcome stays unknown. */
function addUntilAnswered(transport, requestId, num1, num2) {
  const attempt = transport === 'http' ? httpAttempt : grpcAttempt;
  for (let attemptNo = 1; attemptNo <= MAX_ATTEMPTS; attemptNo += 1) {
    const result = attempt(requestId, num1, num2);
    errors.add(!result.ok, { endpoint: `${transport}_add` });
    if (result.ok || result.final) return result;
    if (attemptNo < MAX_ATTEMPTS) {
      transientRetries.add(1);
      sleep(0.1 * 2 ** attemptNo);
    }
  }
  return undefined;
}

/**
 * Adds two small random numbers under a fresh request id over 'grpc' or 'http', and sometimes
 * repeats the call with the same id, which must be answered as a replay of the same sum.
 */
export function add(transport, runId) {
  const requestId = newRequestId(runId);
  const num1 = smallNumber();
  const num2 = smallNumber();
  const expected = String(num1 + num2);
  const answer = addUntilAnswered(transport, requestId, num1, num2);
  if (answer === undefined) {
    // Some attempt may have been recorded: the exact total check cannot account for this id.
    unresolvedRequests.add(1);
    return;
  }
  if (!answer.ok) return; // refused for good: nothing was recorded
  // The first answer for an id counts, even a replay: then an earlier attempt that timed out was recorded.
  const right = check(answer, { 'sum is num1 + num2': (a) => a.sum === expected });
  if (!right) wrongAnswers.add(1);
  acceptedRequests.add(1);
  if (num1 + num2 >= 0) acceptedSumPositive.add(num1 + num2);
  else acceptedSumNegative.add(-(num1 + num2));

  if (Math.random() < DELIBERATE_RETRY_SHARE) {
    deliberateRetries.add(1);
    const again = addUntilAnswered(transport, requestId, num1, num2);
    const replayed = check(again, {
      'a retry with the same id is a replay': (a) => a !== undefined && a.ok && a.replayed === true,
      'a replay returns the original sum': (a) => a !== undefined && a.ok && a.sum === expected,
    });
    if (!replayed) wrongAnswers.add(1);
  }
}

/** GET /total: reads only. */
export function readTotal() {
  const response = http.get(`${targets.totalsUrl}/total`, {
    timeout: REQUEST_TIMEOUT,
    tags: { endpoint: 'total', name: 'GET /total' },
  });
  const ok = check(response, {
    'GET /total is 200': (r) => r.status === 200,
    'GET /total has a decimal total': (r) => r.status === 200 && /^-?\d+$/.test(String(r.json('total'))),
  });
  errors.add(!ok, { endpoint: 'total' });
}

/** Sleeps a random time in [minSeconds, maxSeconds]. */
export function thinkTime(minSeconds, maxSeconds) {
  if (maxSeconds > 0) sleep(minSeconds + Math.random() * (maxSeconds - minSeconds));
}
