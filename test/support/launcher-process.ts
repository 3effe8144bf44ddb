// `npm start` as a real process, for the tests of the launcher.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { sleep } from '../../tools/load/add-load.ts';
import { repoRoot } from '../../tools/lib/paths.ts';

/** `npm start [-- args]`, as its script runs it, with its output kept. */
export class Launcher {
  readonly child: ChildProcess;
  output = '';
  readonly exited: Promise<number | null>;

  constructor(env: Record<string, string>, args: string[] = []) {
    this.child = spawn(process.execPath, ['tools/with-dependencies.mjs', '--build', 'tools/local-stack/launcher.ts', ...args], {
      cwd: repoRoot,
      env: { ...process.env, LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => (this.output += chunk.toString());
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  async waitFor(text: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.output.includes(text)) {
      if (this.child.exitCode !== null) throw new Error(`npm start exited (${this.child.exitCode}) before "${text}":\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`no "${text}" within ${timeoutMs} ms:\n${this.output}`);
      await sleep(100);
    }
  }

  /** Ctrl-C, as a terminal sends it to the foreground process; resolves with the exit code. */
  interrupt(): Promise<number | null> {
    this.child.kill('SIGINT');
    return this.exited;
  }
}

/** The command line and the NODE_OPTIONS of a process, to tell what it loaded at start. */
export function startedAs(pid: number): { argv: string[]; nodeOptions: string } {
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  const environment = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  const nodeOptions = environment.find((variable) => variable.startsWith('NODE_OPTIONS='))?.slice('NODE_OPTIONS='.length) ?? '';
  return { argv, nodeOptions };
}

/**
 * The processes of one `npm start`: those whose command line names its data folder (PostgreSQL,
 * Kafka, nginx) or that inherited it as SUMMA_DATA_DIR (the launcher and the services), with their
 * command lines.
 */
export function processesOf(dataDir: string): { pid: number; command: string }[] {
  const found: { pid: number; command: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      const environment = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (command.includes(dataDir) || environment.includes(`SUMMA_DATA_DIR=${dataDir}`)) found.push({ pid: Number(entry), command });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => socket.destroy() || resolve(true));
    socket.once('error', () => resolve(false));
  });
}
