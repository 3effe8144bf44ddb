// `summa stop`: stops a running `npm start` from another terminal, as Ctrl-C in its own would: the
// launcher is sent SIGTERM and stops its components in order (nginx, services, Kafka, PostgreSQL).
import { readFileSync } from 'node:fs';
import { readRunState, runStateFile } from './run-state.ts';
import { HELP_OPTION, NotRunningError, numberOption, OPS_EXIT, parseCommandArgs, runOpsCommand, UsageError } from './ops-command.ts';
import { pidAlive } from './status-probes.ts';
import { dataDirOf } from './status-command.ts';

export const STOP_USAGE = `usage: summa stop [--timeout <s>] [--json]

  Stops the npm start that runs from the data folder: its launcher (the pid in the run state) is
  sent SIGTERM, and this waits until the launcher and every component it started are gone.

  --timeout <s>  how long to wait for everything to stop (default 60)
  --json         the outcome as JSON on stdout

examples:
  summa stop
  SUMMA_DATA_DIR=/srv/summa summa stop --timeout 120 --json

exit codes:
  0  stopped
  1  something was still running when the timeout ran out (named in the message)
  2  a bad command line
  3  nothing is running from the data folder

environment:
  SUMMA_DATA_DIR  the data folder npm start ran from, default <repo>/.data`;

export async function runStopCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return runOpsCommand('stop', STOP_USAGE, async () => {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { timeout: { type: 'string' }, json: { type: 'boolean' }, ...HELP_OPTION },
    });
    if (values.help) {
      console.log(STOP_USAGE);
      return OPS_EXIT.ok;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const timeoutMs = numberOption('--timeout', values.timeout, 60, { min: 1, max: 3_600 }) * 1_000;
    const dataDir = dataDirOf(env);
    const state = await readRunState(dataDir).catch((error: Error) => {
      throw new Error(`cannot read the run state ${runStateFile(dataDir)}: ${error.message}`, { cause: error });
    });
    // The pid is checked to be a launcher still: after a crash the run state stays, and its pid may be another program's by now.
    if (!state || !isLauncher(state.launcherPid)) {
      const stale = state ? ` (the run state names launcher pid ${state.launcherPid}, which is gone)` : '';
      const message = `nothing is running from ${dataDir}${stale}`;
      if (!values.json) throw new NotRunningError(message);
      console.log(JSON.stringify({ stopped: false, running: false, dataDir, message }));
      return OPS_EXIT.notRunning;
    }
    const startedAt = Date.now();
    process.kill(state.launcherPid, 'SIGTERM');
    const processes = [
      { name: 'launcher', pid: state.launcherPid },
      ...state.components.flatMap((component) => (component.pid === null ? [] : [{ name: component.name, pid: component.pid }])),
    ];
    let left = processes;
    while (left.length > 0 && Date.now() - startedAt < timeoutMs) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      left = left.filter((process) => pidAlive(process.pid) === true);
    }
    const seconds = Math.round((Date.now() - startedAt) / 100) / 10;
    const stopped = left.length === 0;
    if (values.json) {
      console.log(JSON.stringify({ stopped, dataDir, launcherPid: state.launcherPid, seconds, stillRunning: left, components: processes.length - 1 }, null, 2));
    } else if (stopped) {
      console.log(`stopped Summa (${state.topology}, launcher pid ${state.launcherPid}, ${processes.length - 1} components) in ${seconds} s`);
    } else {
      console.error(`summa stop: still running after ${seconds} s: ${left.map((process) => `${process.name} (pid ${process.pid})`).join(', ')}`);
    }
    return stopped ? OPS_EXIT.ok : OPS_EXIT.failed;
  });
}

function isLauncher(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('local-stack/launcher');
  } catch {
    return false;
  }
}
