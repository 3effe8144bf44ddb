// The benchmark's saturation load (R1 and P): ghz, a Go gRPC load generator, calling Add with
// Summa's proto. It costs a fraction of k6's CPU per call, and on a machine shared with what it
// measures every core it takes is one the system under test does not get.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from '../lib/paths.ts';
import type { LoadResult } from './k6-load.ts';
import { reapedChildrenCpuSeconds } from './process-stats.ts';

const PROTO_ROOT = path.join(repoRoot, 'proto');
const PROTO = 'summa/v1/calculator.proto';
const METHOD = 'summa.v1.CalculatorService/Add';
// No request_id: the server assigns a fresh one to each call, so every acknowledged call is a new
// sum (src/calculator/add-command.ts), and ghz needs no template per request.
const REQUEST = JSON.stringify({ num1: '20', num2: '22' });

export interface Callers {
  /** HTTP/2 connections the callers share. */
  connections: number;
  /** Calls in flight at once (ghz's workers). */
  concurrency: number;
}

export type GhzLoadShape =
  | ({ mode: 'closed'; durationSeconds: number } & Callers)
  | { mode: 'open'; rate: number; durationSeconds: number; connections: number }
  | ({ mode: 'fill'; requests: number } & Callers);

export interface GhzLoadResult extends LoadResult {
  /** Calls ghz made, answered or not. */
  requests: number;
  /** gRPC status name → calls (OK, Unavailable, …). */
  statusCodes: Record<string, number>;
  /** Error message → calls. */
  errors: Record<string, number>;
  /** The generator's CPU per call it made (ms), start-up included. */
  generatorCpuMsPerRequest: number;
}

export class GhzError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GhzError';
  }
}

/** The part of ghz's JSON report (-O json) read here; durations in nanoseconds. */
interface GhzReport {
  count: number;
  total: number;
  statusCodeDistribution?: Record<string, number> | null;
  errorDistribution?: Record<string, number> | null;
  latencyDistribution?: { percentage: number; latency: number }[] | null;
}

/** ghz's command line for a load shape (without the target). */
export function ghzArguments(shape: GhzLoadShape, reportFile: string): string[] {
  const args = [
    '--insecure',
    `--import-paths=${PROTO_ROOT}`,
    `--proto=${PROTO}`,
    `--call=${METHOD}`,
    `--data=${REQUEST}`,
    '--disable-template-functions',
    '--disable-template-data',
    '--timeout=10s',
    '--format=json',
    `--output=${reportFile}`,
  ];
  const workers = (callers: Callers) => {
    // ghz spreads the workers over the connections and needs at least one worker on each.
    const connections = Math.max(1, Math.min(callers.connections, callers.concurrency));
    return [`--connections=${connections}`, `--concurrency=${callers.concurrency}`];
  };
  if (shape.mode === 'closed') {
    // "wait": calls in flight when the time is up are answered and counted, not cut off; a cut-off
    // call may still have been recorded, and the benchmark waits for exactly what was acknowledged.
    args.push(...workers(shape), `--duration=${shape.durationSeconds}s`, '--duration-stop=wait');
  } else if (shape.mode === 'open') {
    // Enough workers that one is free at the requested rate up to 2 s of latency each: a worker
    // busy with a slow call would otherwise hold the next call back (coordinated omission).
    const rate = Math.max(1, Math.round(shape.rate));
    const concurrency = Math.max(50, Math.min(2000, rate * 2));
    args.push(...workers({ connections: shape.connections, concurrency }), `--rps=${rate}`, `--duration=${shape.durationSeconds}s`, '--duration-stop=wait');
  } else {
    args.push(...workers(shape), `--total=${shape.requests}`);
  }
  return args;
}

const percentileMs = (report: GhzReport, percentage: number) =>
  (report.latencyDistribution ?? []).find((entry) => entry.percentage === percentage)?.latency ?? NaN;

/** What a ghz report says, as the benchmark counts it: only OK answers are acknowledged. */
export function readGhzReport(report: GhzReport, generatorCpuSeconds: number, shape: GhzLoadShape): GhzLoadResult {
  const statusCodes = report.statusCodeDistribution ?? {};
  const acked = statusCodes.OK ?? 0;
  const requests = report.count;
  const wallSeconds = report.total / 1e9;
  const asked = shape.mode === 'open' ? Math.round(Math.max(1, Math.round(shape.rate)) * shape.durationSeconds) : 0;
  return {
    acked,
    failed: requests - acked,
    ackedPerSecond: wallSeconds > 0 ? acked / wallSeconds : 0,
    wallSeconds,
    p50Ms: percentileMs(report, 50) / 1e6,
    p99Ms: percentileMs(report, 99) / 1e6,
    // ghz does not drop a call it cannot start on time, it starts it late: the shortfall says how
    // far the rate was not held.
    dropped: Math.max(0, asked - requests),
    generatorCpuSeconds,
    requests,
    statusCodes,
    errors: report.errorDistribution ?? {},
    generatorCpuMsPerRequest: requests > 0 ? (generatorCpuSeconds * 1000) / requests : NaN,
  };
}

export async function runGhz(ghz: string, target: string, shape: GhzLoadShape): Promise<GhzLoadResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'summa-bench-ghz-'));
  const reportFile = path.join(dir, 'report.json');
  try {
    // ghz is this process's child: its CPU time is added to ours for reaped children when it exits.
    const cpuBefore = reapedChildrenCpuSeconds();
    const { code, output } = await new Promise<{ code: number; output: string }>((resolve, reject) => {
      const child = spawn(ghz, [...ghzArguments(shape, reportFile), target], { cwd: PROTO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      const keep = (chunk: Buffer) => {
        text = (text + chunk.toString()).slice(-20_000);
      };
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      child.on('error', reject);
      child.on('close', (exitCode) => resolve({ code: exitCode ?? 1, output: text }));
    });
    const generatorCpuSeconds = reapedChildrenCpuSeconds() - cpuBefore;
    const text = await readFile(reportFile, 'utf8').catch(() => '');
    if (code !== 0 || text === '') throw new GhzError(`ghz (${shape.mode}) exited with ${code}:\n${output}`);
    return readGhzReport(JSON.parse(text) as GhzReport, generatorCpuSeconds, shape);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
