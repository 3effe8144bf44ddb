// Processes the chaos harness starts, kills and restarts: the instances of the three services, and
// the PostgreSQL cluster's postmaster with all its children.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const HAS_SETPRIV = spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0;

/** Every pid this process started and has not seen exit: killed on exit, whatever the cause. */
const living = new Set<number>();
process.on('exit', () => {
  for (const pid of living) signal(pid, 'SIGKILL');
});

export type ServiceName = 'calculator' | 'relay' | 'totals';

/** One instance of a service as a real child process, its output appended to a log file. */
export class ChaosService {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stopping = false;
  /** Exits nobody asked for: a service must ride out its dependencies' faults, not die of them. */
  crashes = 0;

  constructor(
    readonly service: ServiceName,
    /** This instance's name, e.g. totals-2. */
    readonly name: string,
    private readonly env: Record<string, string>,
    private readonly readyUrl: string,
    readonly logFile: string,
  ) {}

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(timeoutMs = 90_000): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running`);
    const out = openSync(this.logFile, 'a');
    const args = ['--import', 'tsx', path.join(root, 'src', this.service, 'main.ts')];
    // With setpriv the kernel kills the service if the harness dies by a signal.
    const child = HAS_SETPRIV
      ? spawn('setpriv', ['--pdeathsig', 'KILL', process.execPath, ...args], { cwd: root, env: { ...process.env, ...this.env }, stdio: ['ignore', out, out] })
      : spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...this.env }, stdio: ['ignore', out, out] });
    closeSync(out);
    this.child = child;
    this.stopping = false;
    const pid = child.pid!;
    living.add(pid);
    this.exited = new Promise((resolve) =>
      child.once('exit', () => {
        living.delete(pid);
        if (!this.stopping) this.crashes += 1;
        resolve();
      }),
    );
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`${this.name} exited during start-up; see ${this.logFile}`);
      if (await fetch(this.readyUrl, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false)) return;
      await sleep(100);
    }
    throw new Error(`${this.name} was not ready within ${timeoutMs} ms; see ${this.logFile}`);
  }

  /** The pid of the running process (setpriv execs the service, so it is the service's own). */
  get pid(): number {
    if (!this.running) throw new Error(`${this.name} is not running`);
    return this.child!.pid!;
  }

  /** SIGKILL: no chance to clean up (a process stopped by SIGSTOP dies all the same). */
  async kill(): Promise<void> {
    this.stopping = true;
    if (this.running) this.child!.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, and SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 30_000): Promise<void> {
    this.stopping = true;
    if (!this.running) return this.exited;
    this.child!.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * kill -9 of a PostgreSQL cluster: the postmaster and every process it forked. Killing only the
 * postmaster would leave backends attached to the shared memory, and a new postmaster refuses to
 * start on that data directory until they are gone. SIGSTOP first, so that the postmaster cannot
 * fork while its children are listed.
 */
export async function killPostgresCluster(postmasterPid: number, port: number): Promise<void> {
  // The pid comes from postmaster.pid, which outlives its process: never signal a stranger.
  const command = await readFile(`/proc/${postmasterPid}/cmdline`, 'utf8').catch(() => '');
  if (!command.includes('postgres')) return waitForPortFree(port);
  signal(postmasterPid, 'SIGSTOP');
  const children = await childPids(postmasterPid);
  for (const pid of [postmasterPid, ...children]) signal(pid, 'SIGKILL');
  const deadline = Date.now() + 30_000;
  for (const pid of [postmasterPid, ...children]) {
    while (isAlive(pid)) {
      if (Date.now() > deadline) throw new Error(`PostgreSQL process ${pid} survived SIGKILL`);
      await sleep(20);
    }
  }
  await waitForPortFree(port);
}

async function childPids(parent: number): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses, so parse from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) === parent) pids.push(Number(entry));
  }
  return pids;
}

/** Alive and not a zombie (a zombie holds no memory, no port and no lock). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

export async function waitForPortFree(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await canListen(port))) {
    if (Date.now() > deadline) throw new Error(`port ${port} is still taken after ${timeoutMs} ms`);
    await sleep(100);
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
