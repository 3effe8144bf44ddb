// `summa watch`: the total, its count and the rates, refreshed in the terminal.
import { performance } from 'node:perf_hooks';
import { HELP_OPTION, numberOption, OPS_EXIT, parseCommandArgs, runOpsCommand, UsageError } from './ops-command.ts';
import { getText, readTotal, resolveTargets, type Targets } from './targets.ts';

export const WATCH_USAGE = `usage: summa watch [--interval <s>] [--count <n>] [--json]

  Reads GET /total every interval and shows the total, the count of applied sums, the sums applied
  per second and, when the run state names the calculators, the Adds they accepted per second (from
  their /metrics). On a terminal the line is redrawn in place; otherwise one line per reading.

  --interval <s>  seconds between readings (default 1, at least 0.2)
  --count <n>     stop after n readings (default: until Ctrl-C)
  --json          one JSON object per reading on stdout

examples:
  summa watch
  summa watch --interval 5
  summa watch --count 3 --json

exit codes:
  0  stopped by --count or Ctrl-C
  2  a bad command line
  4  the totals service is down (the message names its address)

environment:
  TOTALS_URL, TLS_CA_FILE, SUMMA_DATA_DIR (see summa --help)`;

export interface WatchReading {
  at: string;
  total: string;
  count: number;
  /** Sums applied per second since the previous reading (null for the first). */
  appliedPerSecond: number | null;
  /** Adds the calculators accepted per second since the previous reading (null when unknown). */
  acceptedPerSecond: number | null;
}

export async function runWatchCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return runOpsCommand('watch', WATCH_USAGE, async () => {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { interval: { type: 'string' }, count: { type: 'string' }, json: { type: 'boolean' }, ...HELP_OPTION },
    });
    if (values.help) {
      console.log(WATCH_USAGE);
      return OPS_EXIT.ok;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const intervalMs = numberOption('--interval', values.interval, 1, { min: 0.2, max: 3_600 }) * 1_000;
    const count = numberOption('--count', values.count, Infinity, { min: 1, max: Number.MAX_SAFE_INTEGER, integer: true });
    const targets = await resolveTargets(env);
    const tty = process.stdout.isTTY === true && !values.json;
    let interrupted = false;
    process.once('SIGINT', () => (interrupted = true));
    let previous: { at: number; count: number; accepted: number | null } | undefined;
    for (let reading = 0; reading < count && !interrupted; reading++) {
      if (reading > 0) await new Promise((resolve) => setTimeout(resolve, intervalMs));
      const [total, accepted] = await Promise.all([readTotal(targets), acceptedSoFar(targets)]);
      const at = performance.now();
      const perSecond = (now: number | null, before: number | null | undefined) =>
        previous && now !== null && before !== null && before !== undefined ? Math.round(((now - before) / ((at - previous.at) / 1_000)) * 10) / 10 : null;
      const current: WatchReading = {
        at: new Date().toISOString(),
        total: total.total.toString(),
        count: total.count,
        appliedPerSecond: perSecond(total.count, previous?.count),
        acceptedPerSecond: perSecond(accepted, previous?.accepted),
      };
      previous = { at, count: total.count, accepted };
      if (values.json) console.log(JSON.stringify(current));
      else process.stdout.write(tty ? `\r\x1b[2K${formatReading(current)}` : `${formatReading(current)}\n`);
    }
    if (tty) process.stdout.write('\n');
    return OPS_EXIT.ok;
  });
}

export function formatReading(reading: WatchReading): string {
  const rate = (value: number | null) => (value === null ? '-' : `${value}/s`);
  return `${reading.at.slice(11, 19)}  total ${reading.total}  count ${reading.count}  applied ${rate(reading.appliedPerSecond)}  accepted ${rate(reading.acceptedPerSecond)}`;
}

/**
 * Adds accepted so far, summed over the calculators' summa_calculator_requests_total{outcome="accepted"};
 * null when they are not known or one does not answer (a rate over part of them would mislead).
 */
async function acceptedSoFar(targets: Targets): Promise<number | null> {
  if (targets.calculatorMetricsUrls.length === 0) return null;
  try {
    const counts = await Promise.all(
      targets.calculatorMetricsUrls.map(async (url) => {
        const { status, text } = await getText(url, 'calculator', { ...(targets.ca ? { ca: targets.ca } : {}), timeoutMs: 2_000 });
        if (status !== 200) throw new Error(`${url}: ${status}`);
        const match = /^summa_calculator_requests_total\{[^}]*outcome="accepted"[^}]*\}\s+(\S+)/m.exec(text);
        return match ? Number(match[1]) : 0;
      }),
    );
    return counts.reduce((sum, value) => sum + value, 0);
  } catch {
    return null;
  }
}
