import { spawn, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface PrometheusServerOptions {
  /** The configuration and the TSDB live here. */
  dataDir: string;
  /** Listens on 127.0.0.1:port. */
  port: number;
  /** Scrape jobs: job name → "host:port" targets serving /metrics. */
  jobs: Record<string, string[]>;
  scrapeIntervalSeconds?: number;
  /** The prometheus command (default: `prometheus` on PATH; locateTool('prometheus') finds the project's). */
  binary?: string;
}

export interface PrometheusServer {
  readonly url: string;
  /** Prometheus's own output, the last few kilobytes. */
  readonly log: string;
  /** Evaluates an instant PromQL query. */
  query(expr: string): Promise<PromQueryResult>;
  stop(): Promise<void>;
}

export interface PromQueryResult {
  status: string;
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

const READY_TIMEOUT_MS = 30_000;

/** Whether a Prometheus binary can be run, and its version line. */
export function prometheusVersion(binary = 'prometheus'): string | undefined {
  const result = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  return result.status === 0 ? (result.stdout || result.stderr).split('\n')[0] : undefined;
}

/** The scrape configuration for `jobs`, as Prometheus's YAML. */
export function prometheusConfig(jobs: Record<string, string[]>, scrapeIntervalSeconds: number): string {
  return [
    'global:',
    `  scrape_interval: ${scrapeIntervalSeconds}s`,
    `  evaluation_interval: ${scrapeIntervalSeconds}s`,
    'scrape_configs:',
    ...Object.entries(jobs).flatMap(([job, targets]) => [
      `  - job_name: ${JSON.stringify(job)}`,
      '    static_configs:',
      `      - targets: [${targets.map((target) => JSON.stringify(target)).join(', ')}]`,
    ]),
    '',
  ].join('\n');
}

/** A real Prometheus (the machine's binary) scraping the given jobs; resolves once it is ready. */
export async function startPrometheusServer(options: PrometheusServerOptions): Promise<PrometheusServer> {
  const binary = options.binary ?? 'prometheus';
  await mkdir(options.dataDir, { recursive: true });
  const configFile = path.join(options.dataDir, 'prometheus.yml');
  await writeFile(configFile, prometheusConfig(options.jobs, options.scrapeIntervalSeconds ?? 5));
  const url = `http://127.0.0.1:${options.port}`;
  const child = spawn(
    binary,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(options.dataDir, 'data')}`,
      `--web.listen-address=127.0.0.1:${options.port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-10_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const spawnFailed = new Promise<Error>((resolve) => child.once('error', resolve));

  const server: PrometheusServer = {
    url,
    get log() {
      return log;
    },
    async query(expr) {
      const response = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: expr })}`);
      return (await response.json()) as PromQueryResult;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let failure: Error | undefined;
  void spawnFailed.then((error) => (failure = error));
  while (!(await fetch(`${url}/-/ready`).then((r) => r.ok, () => false))) {
    if (failure) throw new Error(`cannot run ${binary}: ${failure.message}`);
    if (child.exitCode !== null) throw new Error(`Prometheus exited with code ${child.exitCode}:\n${log}`);
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`Prometheus was not ready within ${READY_TIMEOUT_MS} ms:\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return server;
}
