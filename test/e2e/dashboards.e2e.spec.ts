import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { startPrometheusServer, type PrometheusServer } from '../../tools/local-stack/prometheus-server.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { CalculatorClient } from '../../tools/lib/grpc-clients.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';
import { missingTool, requireTool } from '../support/tools.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DASHBOARDS = ['deploy/grafana/dashboards/summa.json'];
/** Grafana's built-in variables, as Grafana would fill them in for a 1s scrape interval. */
const GRAFANA_VARIABLES: Record<string, string> = { __rate_interval: '15s', __interval: '2s', __range: '1m' };
/** Load runs this long before the queries, so every rate window holds samples. */
const WARM_UP_MS = 12_000;

interface PanelQuery {
  dashboard: string;
  panel: string;
  expr: string;
}

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

async function panelQueries(): Promise<PanelQuery[]> {
  const queries: PanelQuery[] = [];
  for (const file of DASHBOARDS) {
    const dashboard = JSON.parse(await readFile(path.join(root, file), 'utf8')) as { panels: Panel[] };
    const visit = (panels: Panel[]) => {
      for (const panel of panels) {
        for (const target of panel.targets ?? []) {
          if (target.expr) queries.push({ dashboard: file, panel: panel.title ?? '(untitled)', expr: target.expr });
        }
        visit(panel.panels ?? []);
      }
    };
    visit(dashboard.panels);
  }
  return queries;
}

function withGrafanaVariables(expr: string): string {
  return expr.replace(/\$\{?(__\w+)\}?/g, (whole, name: string) => GRAFANA_VARIABLES[name] ?? whole);
}

/**
 * The dashboards are only as good as their queries: run the three services as processes, scrape
 * them with a real Prometheus, drive traffic (with errors), and evaluate every panel's PromQL.
 */
describe('Grafana dashboards against live metrics', { skip: missingTool('prometheus') }, () => {
  let database: TestDatabase;
  let services: ServiceProcess[] = [];
  let prometheus: PrometheusServer | undefined;
  let workDir: string;
  let calculatorHttp: string;
  let totalsHttp: string;
  let grpcAddress: string;
  let stopLoad: () => Promise<void> = async () => {};

  before(async () => {
    database = await createTestDatabase('dashboards');
    const { env, relayUrl: relayHttp, ...where } = await serviceEnvironment({ name: 'dashboards', databaseUrl: database.url, partitions: 2 });
    ({ grpcAddress, calculatorUrl: calculatorHttp, totalsUrl: totalsHttp } = where);
    const calculator = new ServiceProcess('calculator', env, `${calculatorHttp}/readyz`);
    const relay = new ServiceProcess('relay', env, `${relayHttp}/readyz`);
    const totals = new ServiceProcess('totals', env, `${totalsHttp}/readyz`);
    services = [calculator, relay, totals];
    await calculator.start();
    await Promise.all([relay.start(), totals.start()]);

    workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-prometheus-'));
    prometheus = await startPrometheusServer({
      binary: requireTool('prometheus'),
      dataDir: workDir,
      port: await freePort(),
      scrapeIntervalSeconds: 1,
      jobs: { calculator: [new URL(calculatorHttp).host], relay: [new URL(relayHttp).host], totals: [new URL(totalsHttp).host] },
    });
    stopLoad = startLoad();
  });

  after(async () => {
    await stopLoad();
    await prometheus?.stop();
    await Promise.all(services.map((service) => service.stop()));
    await database?.drop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}\n${prometheus?.log}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  const query = (expr: string) => prometheus!.query(expr);

  /**
   * A steady mix until stopped: gRPC Adds on both service names, invalid ones and idempotency
   * conflicts (non-OK codes), retries (replays), REST Adds valid and invalid, and REST reads.
   */
  function startLoad(): () => Promise<void> {
    const client = new CalculatorClient(grpcAddress);
    const compat = new CalculatorClient(grpcAddress, { compat: true });
    let running = true;
    const ignore = () => {};
    const post = (body: unknown) =>
      fetch(`${calculatorHttp}/v1/sums`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
        .then((r) => r.arrayBuffer())
        .catch(ignore);
    const get = (url: string) => fetch(url).then((r) => r.arrayBuffer()).catch(ignore);
    const loop = (async () => {
      for (let round = 0; running && round < 2_000; round++) {
        const requestId = randomUUID();
        await Promise.all([
          client.add({ num1: round, num2: 1, requestId }).catch(ignore),
          compat.add({ num1: round, num2: 2 }).catch(ignore),
          client.add({ num1: 'not a number', num2: 1 }).catch(ignore),
          post({ num1: round, num2: 3 }),
          post({ num1: 'x' }),
          get(`${totalsHttp}/total`),
          get(`${totalsHttp}/sums/${requestId}`),
        ]);
        await Promise.all([
          client.add({ num1: round, num2: 1, requestId }).catch(ignore), // a retry: replayed
          client.add({ num1: round + 1, num2: 1, requestId }).catch(ignore), // same id, other numbers: conflict
        ]);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    return async () => {
      running = false;
      await loop;
      client.close();
      compat.close();
    };
  }

  it('every target is scraped', async () => {
    await waitUntil('all three services are up in Prometheus', async () => {
      const result = await query('count(up == 1)');
      return result.data?.result[0]?.value[1] === '3';
    });
  });

  it('every panel query returns data', async () => {
    const queries = await panelQueries();
    assert.ok(queries.length >= 30, `the dashboards have their panels (found ${queries.length} queries)`);
    // Samples across whole rate windows, and events that made it through the pipeline.
    await new Promise((resolve) => setTimeout(resolve, WARM_UP_MS));
    await waitUntil('events are applied', async () => {
      const result = await query('sum(summa_totals_events_applied_total) > 0');
      return (result.data?.result.length ?? 0) > 0;
    });

    const failures: string[] = [];
    for (const { dashboard, panel, expr } of queries) {
      const concrete = withGrafanaVariables(expr);
      const result = await query(concrete);
      if (result.status !== 'success') {
        failures.push(`${dashboard} "${panel}": ${concrete}\n    error: ${result.error}`);
      } else if (!result.data || result.data.result.length === 0) {
        failures.push(`${dashboard} "${panel}": ${concrete}\n    no data`);
      } else if (result.data.result.every((series) => Number.isNaN(Number(series.value[1])))) {
        failures.push(`${dashboard} "${panel}": ${concrete}\n    only NaN`);
      }
    }
    assert.deepEqual(failures, [], `panel queries without data:\n${failures.join('\n')}`);
  });

  it('error panels show 0, not "no data", when nothing fails', async () => {
    // Nothing in the load makes a 5xx, so this series exists only through the query's fallback.
    const result = await query(
      withGrafanaVariables('(sum(rate(http_requests_total{status_code=~"5.."}[$__rate_interval])) or vector(0)) / sum(rate(http_requests_total[$__rate_interval]))'),
    );
    assert.equal(result.data?.result[0]?.value[1], '0');
    const queries = await panelQueries();
    assert.ok(
      queries.some((q) => q.expr.includes('status_code=~"5.."') && q.expr.includes('or vector(0)')),
      'the dashboard has a 5xx query with a zero fallback',
    );
  });
});
