// `npm run dashboards`: Prometheus for the system `npm start` runs, scraping its three services,
// and a Grafana provisioning folder that shows the Summa dashboard on it.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { prometheusVersion, startPrometheusServer } from './prometheus-server.ts';
import { ConfigError, envPort } from '../../src/platform/config.ts';
import { DEFAULT_PORTS } from '../../src/platform/ports.ts';
import { ensureTool } from '../lib/tools.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const env = process.env;

async function main(): Promise<number> {
  const dataDir = path.resolve(env.SUMMA_DATA_DIR ?? path.join(root, '.data'));
  const port = envPort(env, 'SUMMA_PROMETHEUS_PORT', 9099);
  const binary = await ensureTool('prometheus');
  const version = binary && prometheusVersion(binary);
  if (!binary || !version) {
    console.error(`cannot run ${binary ?? 'Prometheus'}: tools/setup/20-prometheus.sh provides it (see above), or set PROMETHEUS_BIN to a prometheus command`);
    return 1;
  }
  const prometheus = await startPrometheusServer({
    dataDir: path.join(dataDir, 'prometheus'),
    port,
    binary,
    scrapeIntervalSeconds: 5,
    jobs: {
      calculator: [`127.0.0.1:${envPort(env, 'CALCULATOR_HTTP_PORT', DEFAULT_PORTS.calculatorHttp)}`],
      relay: [`127.0.0.1:${envPort(env, 'RELAY_HTTP_PORT', DEFAULT_PORTS.relayHttp)}`],
      totals: [`127.0.0.1:${envPort(env, 'TOTALS_HTTP_PORT', DEFAULT_PORTS.totalsHttp)}`],
    },
  });
  const provisioning = await writeGrafanaProvisioning(path.join(dataDir, 'grafana', 'provisioning'), prometheus.url);

  console.log(`Prometheus (${version}) on ${prometheus.url}, scraping the calculator, relay and totals every 5 s.

Grafana with the Summa dashboard on it, from any Grafana installation:

  GF_PATHS_PROVISIONING=${provisioning} GF_AUTH_ANONYMOUS_ENABLED=true \\
    grafana server --homepath <grafana's home, e.g. /usr/share/grafana>

then open http://localhost:3000 (folder "Summa"). Or import deploy/grafana/dashboards/summa.json
into an existing Grafana with a Prometheus data source of uid "prometheus" at ${prometheus.url}.

Ctrl-C stops Prometheus.`);

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    process.once('disconnect', resolve);
  });
  await prometheus.stop();
  return 0;
}

/** Grafana provisioning: the Prometheus data source (uid "prometheus") and the repository's dashboards. */
async function writeGrafanaProvisioning(dir: string, prometheusUrl: string): Promise<string> {
  await mkdir(path.join(dir, 'datasources'), { recursive: true });
  await mkdir(path.join(dir, 'dashboards'), { recursive: true });
  await writeFile(
    path.join(dir, 'datasources', 'summa.yml'),
    `apiVersion: 1
datasources:
  - name: Prometheus
    uid: prometheus
    type: prometheus
    access: proxy
    url: ${prometheusUrl}
    isDefault: true
    jsonData:
      timeInterval: 5s
`,
  );
  await writeFile(
    path.join(dir, 'dashboards', 'summa.yml'),
    `apiVersion: 1
providers:
  - name: summa
    folder: Summa
    type: file
    options:
      path: ${JSON.stringify(path.join(root, 'deploy', 'grafana', 'dashboards'))}
`,
  );
  return dir;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof ConfigError ? `configuration error: ${error.message}` : error);
    process.exit(1);
  },
);
