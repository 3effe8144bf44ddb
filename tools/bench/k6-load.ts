// Runs tools/load/k6/add.js, the one load generator the benchmark uses for every system it measures.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { reapedChildrenCpuSeconds } from './process-stats.ts';

const SCRIPT = fileURLToPath(new URL('../load/k6/add.js', import.meta.url));

export type LoadShape =
  | { mode: 'closed'; vus: number; durationSeconds: number }
  | { mode: 'open'; rate: number; durationSeconds: number }
  | { mode: 'fill'; vus: number; iterations: number };

export interface LoadResult {
  acked: number;
  failed: number;
  /** Acknowledged calls per second of the run's wall time. */
  ackedPerSecond: number;
  wallSeconds: number;
  p50Ms: number;
  p99Ms: number;
  /** Open loop: calls k6 could not start on time for lack of a free VU (then the rate was not held). */
  dropped: number;
  /** CPU the load generator itself used. */
  generatorCpuSeconds: number;
}

export class LoadGeneratorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoadGeneratorError';
  }
}

type Metric = { count?: number; 'p(50)'?: number; 'p(99)'?: number };

export async function runLoad(k6: string, target: string, runId: string, shape: LoadShape): Promise<LoadResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'summa-bench-k6-'));
  const summaryFile = path.join(dir, 'summary.json');
  const env: Record<string, string> = { BENCH_MODE: shape.mode, BENCH_TARGET: target, BENCH_RUN_ID: runId };
  if (shape.mode === 'closed') Object.assign(env, { BENCH_VUS: String(shape.vus), BENCH_DURATION: `${shape.durationSeconds}s` });
  if (shape.mode === 'open') {
    // Enough VUs that a free one is always there at the requested rate, up to 2 s latency each.
    const maxVus = Math.max(50, Math.min(2000, Math.ceil(shape.rate * 2)));
    Object.assign(env, {
      BENCH_RATE: String(Math.max(1, Math.round(shape.rate))),
      BENCH_DURATION: `${shape.durationSeconds}s`,
      BENCH_PREALLOCATED_VUS: String(Math.min(maxVus, Math.max(20, Math.ceil(shape.rate / 10)))),
      BENCH_MAX_VUS: String(maxVus),
    });
  }
  if (shape.mode === 'fill') Object.assign(env, { BENCH_VUS: String(shape.vus), BENCH_ITERATIONS: String(shape.iterations) });

  const args = ['run', '--no-usage-report', '--quiet', '--no-color', '--summary-export', summaryFile];
  for (const [name, value] of Object.entries(env)) args.push('-e', `${name}=${value}`);
  args.push(SCRIPT);

  const cpuBefore = reapedChildrenCpuSeconds();
  const startedAt = performance.now();
  const { code, output } = await new Promise<{ code: number; output: string }>((resolve, reject) => {
    const child = spawn(k6, args, { cwd: path.dirname(SCRIPT), stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    const keep = (chunk: Buffer) => {
      text = (text + chunk.toString()).slice(-20_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (exitCode) => resolve({ code: exitCode ?? 1, output: text }));
  });
  const wallSeconds = (performance.now() - startedAt) / 1000;
  const generatorCpuSeconds = reapedChildrenCpuSeconds() - cpuBefore;
  try {
    const summary = JSON.parse(await readFile(summaryFile, 'utf8').catch(() => '{}')) as {
      metrics?: Record<string, Metric>;
      state?: { testRunDurationMs?: number };
    };
    if (code !== 0 || !summary.metrics) throw new LoadGeneratorError(`k6 (${shape.mode}) exited with ${code}:\n${output}`);
    const metrics = summary.metrics;
    const acked = metrics.bench_acked?.count ?? 0;
    const duration = summary.state?.testRunDurationMs ? summary.state.testRunDurationMs / 1000 : wallSeconds;
    return {
      acked,
      failed: metrics.bench_failed?.count ?? 0,
      ackedPerSecond: acked / duration,
      wallSeconds: duration,
      p50Ms: metrics.grpc_req_duration?.['p(50)'] ?? NaN,
      p99Ms: metrics.grpc_req_duration?.['p(99)'] ?? NaN,
      dropped: metrics.dropped_iterations?.count ?? 0,
      generatorCpuSeconds,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
