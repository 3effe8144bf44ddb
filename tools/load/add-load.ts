import { randomInt, randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { CalculatorClient } from '../lib/grpc-clients.ts';

export type Outcome = 'ok' | 'unavailable' | 'network' | 'other';

/** One Add sent by the load, and what became of it. */
export interface Attempt {
  requestId: string;
  num1: bigint;
  num2: bigint;
  via: 'grpc' | 'http';
  sentAt: number;
  answeredAt: number;
  outcome: Outcome;
  /** The status and message when it was not 'ok'. */
  detail?: string;
  latencyMs: number;
}

export interface AddLoadOptions {
  grpcAddress: string;
  httpUrl: string;
  grpcWorkers: number;
  httpWorkers: number;
  /** Pause after a failed call, so a refusing server is not hammered. */
  pauseAfterFailureMs?: number;
  deadlineMs?: number;
}

/**
 * A steady stream of Adds over gRPC and HTTP from a few sequential workers, each one recorded with
 * when it was sent and how it ended, for tests that break things underneath.
 */
export class AddLoad {
  readonly attempts: Attempt[] = [];
  private stopped = false;
  private workers: Promise<void>[] = [];
  private readonly clients: CalculatorClient[] = [];

  constructor(private readonly options: AddLoadOptions) {}

  start(): void {
    for (let i = 0; i < this.options.grpcWorkers; i++) {
      // Reconnects promptly once a restarted server listens again (gRPC's default backoff grows from 1 s).
      const client = new CalculatorClient(this.options.grpcAddress, {
        channelOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 500 },
      });
      this.clients.push(client);
      this.workers.push(this.run('grpc', client));
    }
    for (let i = 0; i < this.options.httpWorkers; i++) this.workers.push(this.run('http'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.workers);
    for (const client of this.clients) client.close();
  }

  /** The acknowledged requests and their sums. */
  acked(): Map<string, bigint> {
    return new Map(this.attempts.filter((a) => a.outcome === 'ok').map((a) => [a.requestId, a.num1 + a.num2]));
  }

  private async run(via: 'grpc' | 'http', client?: CalculatorClient): Promise<void> {
    while (!this.stopped) {
      const attempt = await this.send(via, client);
      this.attempts.push(attempt);
      if (attempt.outcome !== 'ok') await new Promise((resolve) => setTimeout(resolve, this.options.pauseAfterFailureMs ?? 50));
    }
  }

  private async send(via: 'grpc' | 'http', client?: CalculatorClient): Promise<Attempt> {
    const requestId = randomUUID();
    const num1 = BigInt(randomInt(-1_000_000_000, 1_000_000_000));
    const num2 = BigInt(randomInt(-1_000_000_000, 1_000_000_000));
    const sentAt = Date.now();
    const deadlineMs = this.options.deadlineMs ?? 15_000;
    let outcome: Outcome;
    let detail: string | undefined;
    if (via === 'grpc') {
      try {
        const response = await client!.add({ num1, num2, requestId }, deadlineMs);
        outcome = BigInt(response.sum) === num1 + num2 ? 'ok' : 'other';
        if (outcome === 'other') detail = `wrong sum ${response.sum}`;
      } catch (error) {
        const failure = error as grpc.ServiceError;
        outcome = failure.code === grpc.status.UNAVAILABLE ? 'unavailable' : 'other';
        detail = `gRPC ${grpc.status[failure.code] ?? failure.code}: ${failure.details}`;
      }
    } else {
      try {
        const response = await fetch(`${this.options.httpUrl}/v1/sums`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': requestId },
          body: JSON.stringify({ num1: num1.toString(), num2: num2.toString() }),
          signal: AbortSignal.timeout(deadlineMs),
        });
        const text = await response.text();
        if (response.status === 201 && BigInt(JSON.parse(text).sum) === num1 + num2) outcome = 'ok';
        else outcome = response.status === 503 ? 'unavailable' : 'other';
        if (outcome !== 'ok') detail = `HTTP ${response.status}: ${text.slice(0, 200)}`;
      } catch (error) {
        outcome = 'network';
        detail = String((error as Error).cause ?? error);
      }
    }
    const answeredAt = Date.now();
    return { requestId, num1, num2, via, sentAt, answeredAt, outcome, detail, latencyMs: answeredAt - sentAt };
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls GET /total until it counts `count` sums (or the time is up); returns the last answer. */
export async function waitForTotalCount(
  totalsUrl: string,
  count: number,
  timeoutMs = 120_000,
): Promise<{ total: string; count: number }> {
  const read = async () => (await (await fetch(`${totalsUrl}/total`)).json()) as { total: string; count: number };
  const deadline = Date.now() + timeoutMs;
  let last = await read().catch(() => ({ total: '0', count: -1 }));
  while (last.count < count && Date.now() < deadline) {
    await sleep(250);
    last = await read().catch(() => last);
  }
  return last;
}
