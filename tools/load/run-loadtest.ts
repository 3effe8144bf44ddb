// Runs one k6 scenario against a running Summa and then checks the total exactly: the total must
// have grown by precisely the sum of the requests k6 saw acknowledged, no more and no less.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_PORTS } from '../../src/platform/ports.ts';
import { repoRoot } from '../lib/paths.ts';
import { pinnedTool } from '../lib/tools.ts';

export const SCENARIOS = ['smoke', 'ramp', 'spike', 'mix'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface LoadtestTargets {
  /** host:port of the calculator's gRPC server. */
  grpcAddress: string;
  /** Base URL of the calculator's HTTP API. */
  calculatorUrl: string;
  /** Base URL of the totals service. */
  totalsUrl: string;
}

export interface LoadtestOptions {
  scenario: Scenario;
  targets: LoadtestTargets;
  /** Multiplies every stage's duration (k6 LOADTEST_DURATION_SCALE). */
  durationScale?: number;
  /** How long the totals service may take to apply what was acknowledged. */
  settleTimeoutMs?: number;
  /** 'inherit' shows k6's progress and summary; 'pipe' keeps them in the result. */
  output?: 'inherit' | 'pipe';
}

export interface TotalSnapshot {
  total: bigint;
  count: number;
}

export interface LoadtestResult {
  passed: boolean;
  /** 0 when every k6 threshold held (99 is k6's "thresholds failed"). */
  k6ExitCode: number;
  acceptedRequests: number;
  acceptedSum: bigint;
  unresolvedRequests: number;
  before: TotalSnapshot;
  after: TotalSnapshot;
  /** Why the run failed, one line each; empty when it passed. */
  problems: string[];
  /** k6's own output when output is 'pipe'. */
  k6Output: string;
}

export class LoadtestSetupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LoadtestSetupError';
  }
}

export function isScenario(value: string): value is Scenario {
  return (SCENARIOS as readonly string[]).includes(value);
}

/** Where `npm start` runs the services. */
export const DEFAULT_TARGETS: LoadtestTargets = Object.freeze({
  grpcAddress: `127.0.0.1:${DEFAULT_PORTS.calculatorGrpc}`,
  calculatorUrl: `http://127.0.0.1:${DEFAULT_PORTS.calculatorHttp}`,
  totalsUrl: `http://127.0.0.1:${DEFAULT_PORTS.totalsHttp}`,
});

/** The `npm start` addresses unless CALCULATOR_GRPC_ADDRESS, CALCULATOR_URL or TOTALS_URL say otherwise. */
export function targetsFromEnv(env: NodeJS.ProcessEnv = process.env): LoadtestTargets {
  return {
    grpcAddress: env.CALCULATOR_GRPC_ADDRESS ?? DEFAULT_TARGETS.grpcAddress,
    calculatorUrl: (env.CALCULATOR_URL ?? DEFAULT_TARGETS.calculatorUrl).replace(/\/$/, ''),
    totalsUrl: (env.TOTALS_URL ?? DEFAULT_TARGETS.totalsUrl).replace(/\/$/, ''),
  };
}

export async function readTotal(totalsUrl: string): Promise<TotalSnapshot> {
  let response: Response;
  try {
    response = await fetch(`${totalsUrl}/total`, { signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    throw new LoadtestSetupError(`cannot reach the totals service at ${totalsUrl} (is Summa running? npm start)`, { cause: error });
  }
  if (!response.ok) throw new LoadtestSetupError(`GET ${totalsUrl}/total answered ${response.status}`);
  const body = (await response.json()) as { total: string; count: number };
  return { total: BigInt(body.total), count: body.count };
}

export async function runLoadtest(options: LoadtestOptions): Promise<LoadtestResult> {
  const { targets } = options;
  const k6 = await pinnedTool('k6');
  const before = await readTotal(targets.totalsUrl);
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'summa-loadtest-'));
  try {
    const summaryFile = path.join(workDir, 'summary.json');
    const env: Record<string, string> = {
      SCENARIO: options.scenario,
      SUMMA_LOADTEST_RUN_ID: `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`,
      CALCULATOR_GRPC_ADDRESS: targets.grpcAddress,
      CALCULATOR_URL: targets.calculatorUrl,
      TOTALS_URL: targets.totalsUrl,
      LOADTEST_DURATION_SCALE: String(options.durationScale ?? 1),
    };
    const args = ['run', '--no-usage-report', '--summary-export', summaryFile];
    for (const [name, value] of Object.entries(env)) args.push('-e', `${name}=${value}`);
    if (options.output === 'pipe') args.push('--no-color', '--quiet');
    args.push(path.join(repoRoot, 'tools', 'load', 'k6', 'summa.js'));
    const { code, output } = await runK6(k6, args, options.output ?? 'inherit');

    const problems: string[] = [];
    if (code !== 0) problems.push(code === 99 ? 'k6 thresholds failed (see the summary)' : `k6 exited with code ${code}`);
    const metrics = await readSummaryMetrics(summaryFile).catch((error: unknown) => {
      throw new LoadtestSetupError(`k6 wrote no readable summary (exit code ${code}):\n${output.slice(-4000)}`, { cause: error });
    });
    const acceptedRequests = counterOf(metrics, 'summa_accepted_requests');
    const acceptedSum = BigInt(counterOf(metrics, 'summa_accepted_sum_positive')) - BigInt(counterOf(metrics, 'summa_accepted_sum_negative'));
    const unresolvedRequests = counterOf(metrics, 'summa_unresolved_requests');
    if (unresolvedRequests > 0) problems.push(`${unresolvedRequests} requests ended with an unknown outcome; the total cannot be checked exactly`);

    const after = await waitForCount(targets.totalsUrl, before.count + acceptedRequests, options.settleTimeoutMs ?? 120_000);
    const countDelta = after.count - before.count;
    const sumDelta = after.total - before.total;
    if (countDelta !== acceptedRequests) {
      problems.push(`the total counts ${countDelta} new sums, but ${acceptedRequests} requests were acknowledged`);
    }
    if (sumDelta !== acceptedSum) {
      problems.push(`the total grew by ${sumDelta}, but the acknowledged sums add up to ${acceptedSum}`);
    }
    return { passed: problems.length === 0, k6ExitCode: code, acceptedRequests, acceptedSum, unresolvedRequests, before, after, problems, k6Output: output };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

function runK6(k6: string, args: string[], output: 'inherit' | 'pipe'): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(k6, args, { cwd: repoRoot, stdio: ['ignore', output, output] });
    let text = '';
    const keep = (chunk: Buffer) => {
      text = (text + chunk.toString()).slice(-200_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    // Ctrl-C reaches k6 too (same process group); it then stops and still writes its summary.
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), output: text }));
  });
}

type SummaryMetrics = Record<string, { count?: number; values?: { count?: number } }>;

async function readSummaryMetrics(file: string): Promise<SummaryMetrics> {
  const summary = JSON.parse(await readFile(file, 'utf8')) as { metrics?: SummaryMetrics };
  if (!summary.metrics) throw new Error('the summary has no metrics');
  return summary.metrics;
}

/** A k6 counter's total; 0 when it never moved (k6 leaves such metrics out). */
function counterOf(metrics: SummaryMetrics, name: string): number {
  const metric = metrics[name];
  const count = metric?.count ?? metric?.values?.count ?? 0;
  if (!Number.isSafeInteger(count)) throw new LoadtestSetupError(`k6 counter ${name} is ${count}, not an exact integer`);
  return count;
}

/** Polls GET /total until it counts `count` sums (or more), or the time is up; then the latest reading. */
async function waitForCount(totalsUrl: string, count: number, timeoutMs: number): Promise<TotalSnapshot> {
  const deadline = Date.now() + timeoutMs;
  let latest = await readTotal(totalsUrl);
  while (latest.count < count && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    latest = await readTotal(totalsUrl);
  }
  if (latest.count >= count) {
    // Anything applied beyond what was acknowledged would show up here too.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    latest = await readTotal(totalsUrl);
  }
  return latest;
}
