import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** One of Summa's services as a real child process, the way `npm start` runs it. */
export class ServiceProcess {
  private child: ChildProcess | undefined;
  private output = '';

  constructor(
    readonly name: 'calculator' | 'relay' | 'totals',
    private readonly env: Record<string, string>,
    private readonly readyUrl: string,
    /** How to tell it is ready, when a plain fetch of readyUrl cannot (HTTPS with a private CA). */
    private readonly isReady: () => Promise<boolean> = () => fetch(readyUrl).then((r) => r.ok, () => false),
  ) {}

  async start(timeoutMs = 60_000): Promise<void> {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', this.name, 'main.ts')], {
      cwd: root,
      env: { ...process.env, LOG_LEVEL: 'warn', ...this.env },
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
      if (child.exitCode !== null) throw new Error(`${this.name} exited during start-up:\n${this.output}`);
      if (await this.isReady()) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`${this.name} was not ready within ${timeoutMs} ms:\n${this.output}`);
  }

  /** SIGTERM and wait for the process to exit; returns its exit code. */
  stop(): Promise<number | null> {
    return this.signal('SIGTERM');
  }

  /** SIGKILL: no chance to clean up. */
  kill(): Promise<number | null> {
    return this.signal('SIGKILL');
  }

  /** Whether the current child is still running. */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The pid of the current child. */
  get pid(): number {
    if (this.child?.pid === undefined) throw new Error(`${this.name} was never started`);
    return this.child.pid;
  }

  get logs(): string {
    return this.output;
  }

  private signal(signal: NodeJS.Signals): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child?.exitCode ?? null);
    return new Promise((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.kill(signal);
    });
  }
}
