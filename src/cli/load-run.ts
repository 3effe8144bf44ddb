// The engine of `summa load`: Adds at a fixed rate or from a fixed number of workers, a share of
// them repeats of acknowledged request ids, with what each one came to kept for the check.
import { randomInt, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Summary } from 'prom-client';
import { outcomeUnknown, statusName, type CalculatorGrpcClient } from './calculator-client.ts';

export interface LoadOptions {
  /** Adds per second (open loop), or undefined to run `concurrency` workers back to back. */
  rate: number | undefined;
  concurrency: number;
  durationMs: number;
  /** Percent of the Adds that resend an already acknowledged request id. */
  idsRepeatPercent: number;
  deadlineMs: number;
}

/** Beyond this many calls in flight a rate run stops sending more: the calculator is behind. */
export const MAX_IN_FLIGHT = 2_000;

interface Request {
  id: string;
  num1: bigint;
  num2: bigint;
}

export interface LoadProgress {
  elapsedMs: number;
  sent: number;
  acknowledged: number;
  errors: number;
  /** Acknowledged per second over the last second. */
  currentRate: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export class LoadRun {
  sent = 0;
  acknowledged = 0;
  /** Repeats sent, and those the calculator answered as replayed (counted once, as it must). */
  repeatsSent = 0;
  repeatsReplayed = 0;
  /** Repeats answered as new: the same id would have been counted twice. */
  repeatsCountedAgain = 0;
  errors = 0;
  readonly errorsByStatus = new Map<string, number>();
  /** Acknowledged request ids and their sums: what the total must move by. */
  readonly acked = new Map<string, bigint>();
  /** Requests whose answer was lost: they may or may not be in the total until settled. */
  readonly unknown = new Map<string, Request>();
  /** Latencies of the acknowledged Adds, as a t-digest: a long run does not keep every one. */
  private readonly latency = new Summary({ name: 'summa_load_latency_ms', help: 'Add latency', percentiles: [0.5, 0.9, 0.99], registers: [] });
  maxLatencyMs: number | null = null;
  private readonly ackTimes: number[] = [];
  private readonly ackedList: Request[] = [];
  private startedAt = 0;
  private endedAt = 0;

  constructor(
    private readonly client: CalculatorGrpcClient,
    private readonly options: LoadOptions,
  ) {}

  async run(): Promise<void> {
    this.startedAt = performance.now();
    const until = this.startedAt + this.options.durationMs;
    if (this.options.rate === undefined) {
      await Promise.all(Array.from({ length: this.options.concurrency }, () => this.worker(until)));
    } else {
      await this.paced(this.options.rate, until);
    }
    this.endedAt = performance.now();
  }

  get elapsedMs(): number {
    return (this.endedAt || performance.now()) - this.startedAt;
  }

  /** The latency percentiles so far (null before the first answer). */
  async percentiles(): Promise<{ p50: number | null; p90: number | null; p99: number | null }> {
    const { values } = await this.latency.get();
    const at = (quantile: number) => (this.acknowledged === 0 ? null : (values.find((value) => value.labels.quantile === quantile)?.value ?? null));
    return { p50: at(0.5), p90: at(0.9), p99: at(0.99) };
  }

  async progress(): Promise<LoadProgress> {
    const now = performance.now();
    while (this.ackTimes.length > 0 && this.ackTimes[0]! < now - 1_000) this.ackTimes.shift();
    const { p50, p99 } = await this.percentiles();
    return {
      elapsedMs: this.elapsedMs,
      sent: this.sent,
      acknowledged: this.acknowledged,
      errors: this.errors,
      currentRate: this.ackTimes.length,
      p50Ms: p50,
      p99Ms: p99,
    };
  }

  /**
   * Resends each request whose answer was lost under its own id (so it is counted at most once),
   * until it is answered or `attempts` are spent; afterwards `unknown` holds those still unsettled.
   */
  async settle(attempts = 3): Promise<void> {
    for (let attempt = 0; attempt < attempts && this.unknown.size > 0; attempt++) {
      await Promise.all(
        [...this.unknown.values()].map(async (request) => {
          try {
            await this.client.add(request.num1, request.num2, request.id, this.options.deadlineMs);
            this.unknown.delete(request.id);
            this.acked.set(request.id, request.num1 + request.num2);
          } catch (error) {
            if (!outcomeUnknown(error)) this.unknown.delete(request.id);
          }
        }),
      );
    }
  }

  private async worker(until: number): Promise<void> {
    while (performance.now() < until) await this.sendOne();
  }

  private async paced(rate: number, until: number): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    let due = 0;
    for (let now = performance.now(); now < until; now = performance.now()) {
      const target = Math.floor(((now - this.startedAt) / 1_000) * rate) + 1;
      while (due < target && inFlight.size < MAX_IN_FLIGHT) {
        due += 1;
        const call = this.sendOne().finally(() => inFlight.delete(call));
        inFlight.add(call);
      }
      // Behind (too many in flight): what was due is dropped, not sent in a burst later.
      due = Math.max(due, target);
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.min(10, 1_000 / rate))));
    }
    await Promise.all(inFlight);
  }

  private next(): { request: Request; repeat: boolean } {
    if (this.ackedList.length > 0 && Math.random() * 100 < this.options.idsRepeatPercent) {
      return { request: this.ackedList[randomInt(this.ackedList.length)]!, repeat: true };
    }
    // Small numbers: the total of a long run stays far inside int64.
    return { request: { id: randomUUID(), num1: BigInt(randomInt(-1_000_000, 1_000_001)), num2: BigInt(randomInt(-1_000_000, 1_000_001)) }, repeat: false };
  }

  private async sendOne(): Promise<void> {
    const { request, repeat } = this.next();
    this.sent += 1;
    if (repeat) this.repeatsSent += 1;
    const sentAt = performance.now();
    try {
      const response = await this.client.add(request.num1, request.num2, request.id, this.options.deadlineMs);
      const answeredAt = performance.now();
      this.latency.observe(answeredAt - sentAt);
      this.maxLatencyMs = Math.max(this.maxLatencyMs ?? 0, answeredAt - sentAt);
      this.ackTimes.push(answeredAt);
      this.acknowledged += 1;
      if (repeat) {
        if (response.replayed) this.repeatsReplayed += 1;
        else this.repeatsCountedAgain += 1;
      } else {
        this.acked.set(request.id, request.num1 + request.num2);
        this.ackedList.push(request);
      }
    } catch (error) {
      this.errors += 1;
      const status = statusName(error);
      this.errorsByStatus.set(status, (this.errorsByStatus.get(status) ?? 0) + 1);
      if (!repeat && outcomeUnknown(error)) this.unknown.set(request.id, request);
    }
  }
}
