// `summa logs [service] [-f]`: the log files of a running `npm start` (one per component, named in
// the run state), or of the last one (<data dir>/logs) once it has stopped.
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { readRunState, type RunState } from './run-state.ts';
import { HELP_OPTION, NotRunningError, numberOption, OPS_EXIT, parseCommandArgs, runOpsCommand, UsageError } from './ops-command.ts';
import { pidAlive } from './status-probes.ts';
import { dataDirOf } from './status-command.ts';

export const LOGS_USAGE = `usage: summa logs [<service>] [-f] [-n <lines>]

  The last lines of each component's log (every component, each line prefixed with its name, or
  only <service>), from the files a running \`npm start\` writes (<data dir>/logs/<name>.log, and
  PostgreSQL's, Kafka's and nginx's own). Without a running npm start, the files the last one left.

  -f, --follow       keep printing what is written, until Ctrl-C or until that npm start stops
  -n, --lines <n>    how many of the last lines to print first (default 20; 0 prints none)

examples:
  summa logs
  summa logs calculator -n 100
  summa logs totals-2 -f

exit codes:
  0  printed (with -f: the npm start stopped, or Ctrl-C)
  2  a bad command line, or no component of that name (the known names are listed)
  3  nothing runs from the data folder and no logs were left there

environment:
  SUMMA_DATA_DIR  the data folder npm start ran from, default <repo>/.data`;

interface LogSource {
  name: string;
  file: string;
}

export async function runLogsCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return runOpsCommand('logs', LOGS_USAGE, async () => {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { follow: { type: 'boolean', short: 'f' }, lines: { type: 'string', short: 'n' }, ...HELP_OPTION },
    });
    if (values.help) {
      console.log(LOGS_USAGE);
      return OPS_EXIT.ok;
    }
    if (positionals.length > 1) throw new UsageError(`one service at most, not ${positionals.join(' ')}`);
    const lines = numberOption('--lines', values.lines, 20, { min: 0, max: 1_000_000, integer: true });
    const dataDir = dataDirOf(env);
    const state = await readRunState(dataDir).catch(() => null);
    const running = state !== null && pidAlive(state.launcherPid) === true;
    const sources = running ? sourcesOf(state) : await leftBehind(dataDir);
    if (sources.length === 0) throw new NotRunningError(`nothing is running from ${dataDir} and it holds no logs; start it with npm start`);
    const [wanted] = positionals;
    const chosen = wanted === undefined ? sources : sources.filter((source) => source.name === wanted);
    if (chosen.length === 0) {
      throw new UsageError(`no component named ${JSON.stringify(wanted)}; known: ${sources.map((source) => source.name).join(', ')}`, false);
    }
    const prefixWidth = chosen.length > 1 ? Math.max(...chosen.map((source) => source.name.length)) : 0;
    const tails = chosen.map((source) => new LogTail(source, prefixWidth));
    for (const tail of tails) await tail.printLast(lines);
    if (!values.follow) return OPS_EXIT.ok;
    await follow(tails, running ? state.launcherPid : null);
    return OPS_EXIT.ok;
  });
}

function sourcesOf(state: RunState): LogSource[] {
  return state.components.flatMap((component) => (component.logFile ? [{ name: component.name, file: component.logFile }] : []));
}

/** <data dir>/logs/<name>.log as the last npm start left them (not the rotated .log.1). */
async function leftBehind(dataDir: string): Promise<LogSource[]> {
  const directory = path.join(dataDir, 'logs');
  const names = await readdir(directory).catch(() => [] as string[]);
  return names
    .filter((name) => name.endsWith('.log'))
    .sort()
    .map((name) => ({ name: name.slice(0, -'.log'.length), file: path.join(directory, name) }));
}

/** Polls every file a few times a second; ends when the launcher it follows is gone. */
async function follow(tails: LogTail[], launcherPid: number | null): Promise<void> {
  let interrupted = false;
  process.once('SIGINT', () => (interrupted = true));
  while (!interrupted) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    for (const tail of tails) await tail.printNew();
    if (launcherPid !== null && pidAlive(launcherPid) !== true) break;
  }
  for (const tail of tails) await tail.printNew(true);
}

/** How much of a file's end is read to find its last lines. */
const TAIL_WINDOW = 1 << 20;

class LogTail {
  private position = 0;
  private partial = '';

  constructor(
    private readonly source: LogSource,
    private readonly prefixWidth: number,
  ) {}

  async printLast(count: number): Promise<void> {
    const size = await this.size();
    const start = Math.max(0, size - TAIL_WINDOW);
    const text = await this.read(start, size);
    this.position = size;
    const lines = text.split('\n');
    // A line cut by the window's start, or not finished yet, is not a line.
    if (start > 0) lines.shift();
    this.partial = lines.pop() ?? '';
    if (count > 0) this.write(lines.slice(-count));
  }

  async printNew(flush = false): Promise<void> {
    const size = await this.size();
    // Smaller than what was read: the file was replaced (a new npm start rotates it), so from its start.
    if (size < this.position) {
      this.position = 0;
      this.partial = '';
    }
    if (size > this.position) {
      const text = this.partial + (await this.read(this.position, size));
      this.position = size;
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      this.write(lines);
    }
    if (flush && this.partial) {
      this.write([this.partial]);
      this.partial = '';
    }
  }

  private write(lines: string[]): void {
    if (lines.length === 0) return;
    const prefix = this.prefixWidth > 0 ? `${this.source.name.padEnd(this.prefixWidth)} | ` : '';
    process.stdout.write(lines.map((line) => `${prefix}${line}\n`).join(''));
  }

  private async size(): Promise<number> {
    return stat(this.source.file).then(
      (stats) => stats.size,
      () => 0,
    );
  }

  private async read(start: number, end: number): Promise<string> {
    if (end <= start) return '';
    const handle = await open(this.source.file, 'r');
    try {
      const buffer = Buffer.alloc(end - start);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
      return buffer.subarray(0, bytesRead).toString('utf8');
    } finally {
      await handle.close();
    }
  }
}
