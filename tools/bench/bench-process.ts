// A process the benchmark starts and measures: one of Summa's services, or the echo server.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from '../lib/paths.ts';

export interface BenchProcessOptions {
  name: string;
  /** Entry point, relative to the repository root: TypeScript (run through tsx) or compiled JavaScript. */
  entry: string;
  env: Record<string, string>;
  /** Resolves true once the process serves. */
  isReady: (output: string) => Promise<boolean>;
  /** Writes a V8 CPU profile here on exit (node --cpu-prof). */
  cpuProfileDir?: string;
  /** Flags for node itself (SERVICE_NODE_FLAGS for Summa's services). */
  nodeFlags?: readonly string[];
}

export class BenchProcess {
  private child: ChildProcess | undefined;
  private output = '';

  constructor(private readonly options: BenchProcessOptions) {}

  get name(): string {
    return this.options.name;
  }

  get pid(): number {
    const pid = this.child?.pid;
    if (pid === undefined) throw new Error(`${this.options.name} is not running`);
    return pid;
  }

  /** Whether it has been started and has not exited. */
  get running(): boolean {
    return this.child?.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get logs(): string {
    return this.output;
  }

  async start(timeoutMs = 60_000): Promise<void> {
    const profile = this.options.cpuProfileDir
      ? // A folder per process, with Node's default file names: they carry the thread id, so the main
        // thread's profile is not overwritten by that of tsx's loader thread, which ends later.
        ['--cpu-prof', `--cpu-prof-dir=${path.join(this.options.cpuProfileDir, `${this.options.name}-${Date.now()}`)}`]
      : [];
    const loader = this.options.entry.endsWith('.ts') ? ['--import', 'tsx'] : [];
    const child = spawn(process.execPath, [...(this.options.nodeFlags ?? []), ...profile, ...loader, path.join(repoRoot, this.options.entry)], {
      cwd: repoRoot,
      env: { ...process.env, LOG_LEVEL: 'warn', ...this.options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`${this.options.name} exited during start-up:\n${this.output}`);
      if (await this.options.isReady(this.output)) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`${this.options.name} was not ready within ${timeoutMs} ms:\n${this.output}`);
  }

  /** SIGTERM, then SIGKILL after 20 s. */
  stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const force = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.once('exit', () => {
        clearTimeout(force);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}

export const httpReady = (url: string) => () => fetch(url).then((response) => response.ok, () => false);
