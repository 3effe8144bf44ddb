// `summa load`: a quick load run against the running system, with a live progress line, a summary,
// and a check that the total moved by exactly the sums the calculator acknowledged.
import { performance } from 'node:perf_hooks';
import { CalculatorGrpcClient } from './calculator-client.ts';
import { LoadRun, type LoadProgress } from './load-run.ts';
import { HELP_OPTION, numberOption, OPS_EXIT, parseCommandArgs, runOpsCommand, UsageError } from './ops-command.ts';
import { readTotal, resolveTargets, type TotalReading } from './targets.ts';

export const LOAD_USAGE = `usage: summa load [--rate <n> | --concurrency <n>] [--duration <s>] [--ids-repeat <p>] [--settle-timeout <s>] [--json]

  Sends Adds over gRPC to the calculator for a while, showing on stderr a progress line (sent,
  acknowledged, errors, acknowledged per second over the last second, p50/p99 latency), then a
  summary. It ends by checking that GET /total moved by exactly the sum of the acknowledged Adds
  and its count by their number, waiting up to --settle-timeout for them to be applied. The
  check assumes nothing else adds meanwhile.

  --rate <n>            Adds per second, sent whether or not earlier ones were answered
  --concurrency <n>     workers, each sending its next Add when the last is answered (default 8)
  --duration <s>        how long to send, in seconds (default 10)
  --ids-repeat <p>      percent of the Adds that resend an acknowledged request id with its numbers;
                        each must be answered "replayed" and must not move the total again (default 0)
  --settle-timeout <s>  how long to wait for the acknowledged sums to be applied (default 30)
  --json                the summary as JSON on stdout (progress stays on stderr)

examples:
  summa load
  summa load --rate 200 --duration 30
  summa load --concurrency 32 --duration 5 --ids-repeat 10 --json

exit codes:
  0  the total moved by exactly the acknowledged sums
  1  it did not (or some answers stayed unknown, so it cannot tell), or a repeat was counted again
  2  a bad command line
  4  the calculator or the totals service is down (the message names it and its address)

environment:
  CALCULATOR_GRPC_ADDRESS, TOTALS_URL, TLS_CA_FILE, SUMMA_WRITE_TOKEN, SUMMA_DATA_DIR (see summa --help)`;

export interface LoadSummary {
  calculator: string;
  totals: string;
  mode: { rate: number } | { concurrency: number };
  durationSeconds: number;
  sent: number;
  acknowledged: number;
  errors: number;
  errorsByStatus: Record<string, number>;
  repeats: { sent: number; replayed: number; countedAgain: number };
  acknowledgedPerSecond: number;
  latencyMs: { p50: number | null; p90: number | null; p99: number | null; max: number | null };
  check: {
    passed: boolean;
    before: { total: string; count: number };
    after: { total: string; count: number };
    expectedTotalDelta: string;
    expectedCountDelta: number;
    totalDelta: string;
    countDelta: number;
    unsettled: number;
    message: string;
  };
}

export async function runLoadCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return runOpsCommand('load', LOAD_USAGE, async () => {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: {
        rate: { type: 'string' },
        concurrency: { type: 'string' },
        duration: { type: 'string' },
        'ids-repeat': { type: 'string' },
        'settle-timeout': { type: 'string' },
        json: { type: 'boolean' },
        ...HELP_OPTION,
      },
    });
    if (values.help) {
      console.log(LOAD_USAGE);
      return OPS_EXIT.ok;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    if (values.rate !== undefined && values.concurrency !== undefined) throw new UsageError('give --rate or --concurrency, not both');
    const rate = values.rate === undefined ? undefined : numberOption('--rate', values.rate, 0, { min: 1, max: 100_000 });
    const concurrency = numberOption('--concurrency', values.concurrency, 8, { min: 1, max: 1_000, integer: true });
    const durationSeconds = numberOption('--duration', values.duration, 10, { min: 0.1, max: 3_600 });
    const idsRepeatPercent = numberOption('--ids-repeat', values['ids-repeat'], 0, { min: 0, max: 100 });
    const settleSeconds = numberOption('--settle-timeout', values['settle-timeout'], 30, { min: 0, max: 3_600 });

    const targets = await resolveTargets(env);
    // Both services are asked first: a load that cannot be checked is not worth sending.
    const before = await readTotal(targets, { strong: true });
    const client = new CalculatorGrpcClient(targets.grpcAddress, targets);
    try {
      await client.connect(5_000);
      const run = new LoadRun(client, { rate, concurrency, durationMs: durationSeconds * 1_000, idsRepeatPercent, deadlineMs: 10_000 });
      const progress = new ProgressLine(process.stderr, durationSeconds);
      const timer = setInterval(() => void run.progress().then((now) => progress.show(now)), progress.intervalMs);
      try {
        await run.run();
      } finally {
        clearInterval(timer);
      }
      progress.done(await run.progress());
      await run.settle();
      const after = await waitForApplied(targets, before, run.acked.size, settleSeconds * 1_000);
      const summary = summarize(run, await run.percentiles(), { rate, concurrency }, targets, before, after);
      console.log(values.json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
      return summary.check.passed ? OPS_EXIT.ok : OPS_EXIT.failed;
    } finally {
      client.close();
    }
  });
}

/** Polls the primary's total until its count has moved by `expected` sums, or the time is up. */
async function waitForApplied(targets: Parameters<typeof readTotal>[0], before: TotalReading, expected: number, timeoutMs: number): Promise<TotalReading> {
  const deadline = performance.now() + timeoutMs;
  let reading = await readTotal(targets, { strong: true });
  while (reading.count - before.count < expected && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    reading = await readTotal(targets, { strong: true });
  }
  return reading;
}

function summarize(
  run: LoadRun,
  percentiles: { p50: number | null; p90: number | null; p99: number | null },
  mode: { rate: number | undefined; concurrency: number },
  targets: { grpcAddress: string; totalsUrl: string },
  before: TotalReading,
  after: TotalReading,
): LoadSummary {
  const round = (value: number | null) => (value === null ? null : Math.round(value * 100) / 100);
  const expectedTotalDelta = [...run.acked.values()].reduce((sum, value) => sum + value, 0n);
  const expectedCountDelta = run.acked.size;
  const totalDelta = after.total - before.total;
  const countDelta = after.count - before.count;
  const moved = totalDelta === expectedTotalDelta && countDelta === expectedCountDelta;
  const passed = moved && run.unknown.size === 0 && run.repeatsCountedAgain === 0;
  let message: string;
  if (passed) message = `the total moved by exactly the ${expectedCountDelta} acknowledged sums`;
  else if (run.repeatsCountedAgain > 0) message = `${run.repeatsCountedAgain} repeated request ids were answered as new, not replayed`;
  else if (run.unknown.size > 0) message = `${run.unknown.size} Adds got no answer even when resent, so the expected total is not known`;
  else if (countDelta < expectedCountDelta) message = `only ${countDelta} of the ${expectedCountDelta} acknowledged sums were applied within the settle timeout`;
  else message = `the total moved by ${totalDelta} over ${countDelta} sums, not by ${expectedTotalDelta} over ${expectedCountDelta} (did something else add meanwhile?)`;
  const seconds = run.elapsedMs / 1_000;
  return {
    calculator: targets.grpcAddress,
    totals: targets.totalsUrl,
    mode: mode.rate === undefined ? { concurrency: mode.concurrency } : { rate: mode.rate },
    durationSeconds: Math.round(seconds * 100) / 100,
    sent: run.sent,
    acknowledged: run.acknowledged,
    errors: run.errors,
    errorsByStatus: Object.fromEntries(run.errorsByStatus),
    repeats: { sent: run.repeatsSent, replayed: run.repeatsReplayed, countedAgain: run.repeatsCountedAgain },
    acknowledgedPerSecond: Math.round((run.acknowledged / seconds) * 10) / 10,
    latencyMs: { p50: round(percentiles.p50), p90: round(percentiles.p90), p99: round(percentiles.p99), max: round(run.maxLatencyMs) },
    check: {
      passed,
      before: { total: before.total.toString(), count: before.count },
      after: { total: after.total.toString(), count: after.count },
      expectedTotalDelta: expectedTotalDelta.toString(),
      expectedCountDelta,
      totalDelta: totalDelta.toString(),
      countDelta,
      unsettled: run.unknown.size,
      message,
    },
  };
}

const ms = (value: number | null) => (value === null ? '-' : `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`);

export function formatProgress(p: LoadProgress, durationSeconds: number): string {
  return (
    `sent ${p.sent}  acked ${p.acknowledged}  errors ${p.errors}  ${p.currentRate}/s  ` +
    `p50 ${ms(p.p50Ms)}  p99 ${ms(p.p99Ms)}  ${(p.elapsedMs / 1_000).toFixed(1)}/${durationSeconds} s`
  );
}

/** On a terminal one line redrawn in place; otherwise (a file, a pipe, CI) a plain line every second. */
class ProgressLine {
  readonly intervalMs: number;
  private readonly tty: boolean;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly durationSeconds: number,
  ) {
    this.tty = stream.isTTY === true;
    this.intervalMs = this.tty ? 250 : 1_000;
  }

  private closed = false;

  show(progress: LoadProgress): void {
    // A reading taken before done() may arrive after it; the final line stays the last.
    if (this.closed) return;
    const line = formatProgress(progress, this.durationSeconds);
    this.stream.write(this.tty ? `\r\x1b[2K${line}` : `${line}\n`);
  }

  done(progress: LoadProgress): void {
    this.show(progress);
    this.closed = true;
    if (this.tty) this.stream.write('\n');
  }
}

function formatSummary(s: LoadSummary): string {
  const errors = Object.entries(s.errorsByStatus).map(([status, count]) => `${status} ${count}`);
  return [
    `load: ${s.sent} Adds in ${s.durationSeconds} s to ${s.calculator} (${'rate' in s.mode ? `rate ${s.mode.rate}/s` : `concurrency ${s.mode.concurrency}`})`,
    `  acknowledged  ${s.acknowledged} (${s.acknowledgedPerSecond}/s)`,
    `  errors        ${s.errors}${errors.length ? ` (${errors.join(', ')})` : ''}`,
    `  repeats       ${s.repeats.sent} sent, ${s.repeats.replayed} replayed${s.repeats.countedAgain ? `, ${s.repeats.countedAgain} COUNTED AGAIN` : ''}`,
    `  latency       p50 ${ms(s.latencyMs.p50)}  p90 ${ms(s.latencyMs.p90)}  p99 ${ms(s.latencyMs.p99)}  max ${ms(s.latencyMs.max)}`,
    `  total         ${s.check.before.total} -> ${s.check.after.total} (moved ${s.check.totalDelta} over ${s.check.countDelta} sums; expected ${s.check.expectedTotalDelta} over ${s.check.expectedCountDelta})`,
    `check ${s.check.passed ? 'passed' : 'FAILED'}: ${s.check.message}`,
  ].join('\n');
}
