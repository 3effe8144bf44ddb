import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runLoadtest, type LoadtestTargets } from '../../tools/load/run-loadtest.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';
import { missingTool } from '../support/tools.ts';

// The k6 smoke scenario, through the same runner as `npm run loadtest -- smoke`, against the three
// services as real processes: it fails on any error, a broken threshold, or a total that differs
// from what was acknowledged.
describe('k6 smoke load test', { timeout: 120_000, skip: missingTool('k6') }, () => {
  let database: TestDatabase;
  let services: ServiceProcess[] = [];
  let targets: LoadtestTargets;

  before(async () => {
    database = await createTestDatabase('loadtest');
    const { env, grpcAddress, calculatorUrl, relayUrl, totalsUrl } = await serviceEnvironment({ name: 'loadtest', databaseUrl: database.url });
    targets = { grpcAddress, calculatorUrl, totalsUrl };
    const calculator = new ServiceProcess('calculator', env, `${targets.calculatorUrl}/readyz`);
    const relay = new ServiceProcess('relay', env, `${relayUrl}/readyz`);
    const totals = new ServiceProcess('totals', env, `${targets.totalsUrl}/readyz`);
    services = [calculator, relay, totals];
    await calculator.start();
    await Promise.all([relay.start(), totals.start()]);
  });

  after(async () => {
    await Promise.all(services.map((service) => service.stop()));
    await database?.drop();
  });

  it('holds every smoke threshold and the total grows by exactly what was acknowledged', async () => {
    const result = await runLoadtest({ scenario: 'smoke', targets, output: 'pipe', settleTimeoutMs: 30_000 });
    assert.deepEqual(result.problems, [], `load test failed:\n${result.problems.join('\n')}\n\nk6 output:\n${result.k6Output.slice(-6000)}`);
    assert.equal(result.k6ExitCode, 0);
    assert.ok(result.acceptedRequests > 50, `only ${result.acceptedRequests} requests were acknowledged`);
    assert.equal(result.after.count - result.before.count, result.acceptedRequests);
    assert.equal(result.after.total - result.before.total, result.acceptedSum);
    assert.ok(result.passed);
  });
});
