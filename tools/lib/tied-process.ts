// Child processes of the local tools (the launcher, the test servers) that must not outlive them.
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

export interface TiedSpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Opens an IPC channel (the services say "ready" over it, and stop when it closes). */
  ipc?: boolean;
}

let setprivWorks: boolean | undefined;
/** The tied children still running; one 'exit' listener kills them all. */
const tied = new Set<ChildProcess>();
let exitHooked = false;

/**
 * Spawns a command with stdout and stderr appended to `output` (a file) or, with 'inherit', going
 * to this process's own, and makes sure it does not outlive this process: it is SIGKILLed on a
 * normal exit of Node, and where util-linux's setpriv exists (it execs the command, so the pid
 * stays the command's) the kernel also kills it if Node dies by a signal.
 */
export function spawnTiedToParent(command: string, args: string[], output: string | 'inherit', options: TiedSpawnOptions = {}): ChildProcess {
  setprivWorks ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0;
  const out = output === 'inherit' ? 'inherit' : openSync(output, 'a');
  const stdio: StdioOptions = ['ignore', out, out, ...(options.ipc ? (['ipc'] as const) : [])];
  const spawnOptions = { stdio, cwd: options.cwd, env: options.env };
  try {
    const child = setprivWorks
      ? spawn('setpriv', ['--pdeathsig', 'KILL', command, ...args], spawnOptions)
      : spawn(command, args, spawnOptions);
    if (!exitHooked) {
      process.on('exit', () => tied.forEach((running) => running.kill('SIGKILL')));
      exitHooked = true;
    }
    tied.add(child);
    child.once('exit', () => tied.delete(child));
    child.once('error', () => tied.delete(child));
    return child;
  } finally {
    if (typeof out === 'number') closeSync(out);
  }
}

/** Whether the child has exited (or never started). */
export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}
