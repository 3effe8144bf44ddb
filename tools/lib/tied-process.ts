// Child processes of the local tools (the launcher, the test servers) that must not outlive them.
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, createWriteStream, openSync } from 'node:fs';

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

/** Appended to `file` and also written to this process's own stdout, as `tee -a` would. */
export interface TeeOutput {
  tee: string;
}

/**
 * Spawns a command with stdout and stderr appended to `output` (a file), going to this process's
 * own ('inherit'), or both ({ tee: file }), and makes sure it does not outlive this process: it is SIGKILLed on a
 * normal exit of Node, and where util-linux's setpriv exists (it execs the command, so the pid
 * stays the command's) the kernel also kills it if Node dies by a signal.
 */
export function spawnTiedToParent(
  command: string,
  args: string[],
  output: string | 'inherit' | TeeOutput,
  options: TiedSpawnOptions = {},
): ChildProcess {
  setprivWorks ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0;
  const out = output === 'inherit' ? 'inherit' : typeof output === 'object' ? 'pipe' : openSync(output, 'a');
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
    if (typeof output === 'object') tee(child, output.tee);
    tied.add(child);
    child.once('exit', () => tied.delete(child));
    child.once('error', () => tied.delete(child));
    return child;
  } finally {
    if (typeof out === 'number') closeSync(out);
  }
}

/**
 * Both streams into one file, as the file output does, and onto this process's stdout, so the
 * terminal shows what the file keeps.
 */
function tee(child: ChildProcess, file: string): void {
  const log = createWriteStream(file, { flags: 'a' });
  let open = 2;
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.on('data', (chunk: Buffer) => {
      log.write(chunk);
      process.stdout.write(chunk);
    });
    stream.once('close', () => --open === 0 && log.end());
  }
}

/** Whether the child has exited (or never started). */
export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}
