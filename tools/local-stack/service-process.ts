// One of Summa's services (calculator, relay, totals) as a process of its own, tied to the launcher.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../lib/paths.ts';
import { SERVICE_NODE_FLAGS } from '../lib/service-node-flags.ts';
import { hasExited, spawnTiedToParent } from '../lib/tied-process.ts';
import type { TeeOutput } from '../lib/tied-process.ts';
import type { RunningProcess } from './supervisor.ts';

export interface ServiceProcessOptions {
  name: string;
  /** Its compiled main module, relative to the project (dist/, which `npm run build` writes). */
  entry: string;
  env: NodeJS.ProcessEnv;
  /** A file its output is appended to, 'inherit' for the launcher's own stdout and stderr, or both. */
  output: string | 'inherit' | TeeOutput;
  /** SIGKILL after this long when SIGTERM did not stop it. */
  stopTimeoutMs?: number;
}

/**
 * Starts the service; resolves when it says it is ready (over the IPC channel), rejects if it
 * exits first. It stops by itself when the launcher's IPC channel closes.
 */
export function startServiceProcess(options: ServiceProcessOptions): Promise<RunningProcess> {
  const entry = path.join(repoRoot, options.entry);
  // Plain node, no TypeScript loader: the services run as they ship. `npm start` builds dist/ first.
  if (!existsSync(entry)) return Promise.reject(new Error(`${options.name}: ${options.entry} is missing; run \`npm run build\` (npm start does)`));
  const child = spawnTiedToParent(process.execPath, [...SERVICE_NODE_FLAGS, entry], options.output, {
    cwd: repoRoot,
    env: options.env,
    ipc: true,
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => child.pid === undefined && resolve({ code: null, signal: null }));
  });
  const where =
    options.output === 'inherit' ? 'see its log above' : typeof options.output === 'object' ? `see its log above or ${options.output.tee}` : `see ${options.output}`;
  const running: RunningProcess = {
    pid: child.pid ?? -1,
    exited,
    stop: async () => {
      if (hasExited(child)) return;
      const force = setTimeout(() => child.kill('SIGKILL'), options.stopTimeoutMs ?? 20_000);
      child.kill('SIGTERM');
      await exited;
      clearTimeout(force);
    },
  };
  return new Promise((resolve, reject) => {
    child.on('message', (message: { type?: string }) => message?.type === 'ready' && resolve(running));
    void exited.then(({ code, signal }) =>
      reject(new Error(`${options.name} exited during start-up (${signal ?? `exit code ${code}`}); ${where}`)),
    );
  });
}
