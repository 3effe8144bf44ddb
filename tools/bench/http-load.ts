// Runs vegeta, the HTTP load generator of the benchmark's HTTP pair (http-phase.ts), as a closed
// loop: a fixed number of workers, each sending its next request as soon as the last one is
// answered, for a fixed time.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { reapedChildrenCpuSeconds } from './process-stats.ts';

export interface HttpLoadShape {
  url: string;
  /** The JSON body of every request. */
  body: string;
  workers: number;
  durationSeconds: number;
}

/** What `vegeta report -type=json` says, in the benchmark's terms. */
export interface VegetaFigures {
  requests: number;
  /** 2xx answers: the requests the server acknowledged. */
  acked: number;
  /** Requests without a 2xx answer, transport errors (status 0) included. */
  errors: number;
  /** Acknowledged requests per second, from the first request sent to the last answer received. */
  ackedPerSecond: number;
  wallSeconds: number;
  /** Over every request, answered or not. */
  p50Ms: number;
  p99Ms: number;
  statusCodes: Record<string, number>;
  /** The distinct error messages, the first few. */
  errorMessages: string[];
}

export interface HttpLoadResult extends VegetaFigures {
  /** CPU the load generator itself used, per request it sent. */
  generatorCpuMsPerRequest: number;
}

export class HttpLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HttpLoadError';
  }
}

interface VegetaReport {
  latencies?: { '50th'?: number; '99th'?: number };
  duration?: number;
  wait?: number;
  requests?: number;
  status_codes?: Record<string, number> | null;
  errors?: string[] | null;
}

const NS_PER_MS = 1e6;

/** The figures of a `vegeta report -type=json` (durations in nanoseconds). */
export function parseVegetaReport(text: string): VegetaFigures {
  let report: VegetaReport;
  try {
    report = JSON.parse(text) as VegetaReport;
  } catch (error) {
    throw new HttpLoadError(`vegeta's report is not JSON (${(error as Error).message}): ${text.slice(0, 200)}`);
  }
  if (typeof report !== 'object' || report === null || typeof report.requests !== 'number' || typeof report.duration !== 'number') {
    throw new HttpLoadError(`vegeta's report has no requests or duration: ${text.slice(0, 200)}`);
  }
  const statusCodes = report.status_codes ?? {};
  // vegeta counts 3xx as success too; only a 2xx means the sum was accepted.
  const acked = Object.entries(statusCodes)
    .filter(([code]) => /^2\d\d$/.test(code))
    .reduce((sum, [, count]) => sum + count, 0);
  const wallSeconds = (report.duration + (report.wait ?? 0)) / 1e9;
  return {
    requests: report.requests,
    acked,
    errors: report.requests - acked,
    ackedPerSecond: wallSeconds > 0 ? acked / wallSeconds : 0,
    wallSeconds,
    p50Ms: (report.latencies?.['50th'] ?? NaN) / NS_PER_MS,
    p99Ms: (report.latencies?.['99th'] ?? NaN) / NS_PER_MS,
    statusCodes,
    errorMessages: (report.errors ?? []).slice(0, 5),
  };
}

function run(command: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-20_000);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

export async function runHttpLoad(vegeta: string, shape: HttpLoadShape): Promise<HttpLoadResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'summa-bench-vegeta-'));
  try {
    await writeFile(path.join(dir, 'body.json'), shape.body);
    await writeFile(path.join(dir, 'targets.txt'), `POST ${shape.url}\nContent-Type: application/json\n@${path.join(dir, 'body.json')}\n`);
    const attack = [
      'attack',
      '-targets=targets.txt',
      // -rate=0: no schedule, each worker sends as soon as it is free (a closed loop).
      '-rate=0',
      `-workers=${shape.workers}`,
      `-max-workers=${shape.workers}`,
      `-duration=${shape.durationSeconds}s`,
      // The answers' bodies are read and dropped, not kept in the results file.
      '-max-body=0',
      '-output=results.bin',
    ];
    const cpuBefore = reapedChildrenCpuSeconds();
    const attacked = await run(vegeta, attack, dir);
    const generatorCpuSeconds = reapedChildrenCpuSeconds() - cpuBefore;
    if (attacked.code !== 0) throw new HttpLoadError(`vegeta attack exited with ${attacked.code}:\n${attacked.stderr}`);
    const reported = await run(vegeta, ['report', '-type=json', 'results.bin'], dir);
    if (reported.code !== 0) throw new HttpLoadError(`vegeta report exited with ${reported.code}:\n${reported.stderr}`);
    const figures = parseVegetaReport(reported.stdout);
    return { ...figures, generatorCpuMsPerRequest: figures.requests > 0 ? (generatorCpuSeconds * 1000) / figures.requests : NaN };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
