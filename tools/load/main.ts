// `npm run loadtest -- <scenario>`: a k6 scenario against the local Summa (the `npm start`
// ports, or CALCULATOR_GRPC_ADDRESS / CALCULATOR_URL / TOTALS_URL), then the exact total check.
import { DEFAULT_TARGETS, isScenario, runLoadtest, SCENARIOS, targetsFromEnv } from './run-loadtest.ts';

const [scenario = 'smoke', ...rest] = process.argv.slice(2);
if (!isScenario(scenario) || rest.length > 0) {
  console.error(`usage: npm run loadtest -- <${SCENARIOS.join('|')}>
  env: CALCULATOR_GRPC_ADDRESS (${DEFAULT_TARGETS.grpcAddress}), CALCULATOR_URL (${DEFAULT_TARGETS.calculatorUrl}), TOTALS_URL (${DEFAULT_TARGETS.totalsUrl}),
       LOADTEST_DURATION_SCALE (1), LOADTEST_SETTLE_TIMEOUT_MS (120000)`);
  process.exit(2);
}

const scale = Number(process.env.LOADTEST_DURATION_SCALE ?? '1');
const settle = Number(process.env.LOADTEST_SETTLE_TIMEOUT_MS ?? '120000');
if (!(scale > 0)) {
  console.error(`LOADTEST_DURATION_SCALE must be a positive number, got ${JSON.stringify(process.env.LOADTEST_DURATION_SCALE)}`);
  process.exit(2);
}
if (!Number.isInteger(settle) || settle < 0) {
  console.error(`LOADTEST_SETTLE_TIMEOUT_MS must be a whole number of milliseconds, got ${JSON.stringify(process.env.LOADTEST_SETTLE_TIMEOUT_MS)}`);
  process.exit(2);
}

try {
  const result = await runLoadtest({ scenario, targets: targetsFromEnv(), durationScale: scale, settleTimeoutMs: settle });
  console.log(`
Exact total check (${scenario}):
  acknowledged new sums  ${result.acceptedRequests}, adding up to ${result.acceptedSum}
  total before → after   ${result.before.total} → ${result.after.total} (count ${result.before.count} → ${result.after.count})
  ${result.passed ? 'PASS: the total grew by exactly what was acknowledged, and every threshold held' : `FAIL:\n    ${result.problems.join('\n    ')}`}`);
  process.exit(result.passed ? 0 : 1);
} catch (error) {
  console.error(`load test could not run: ${(error as Error).message}`);
  process.exit(1);
}
