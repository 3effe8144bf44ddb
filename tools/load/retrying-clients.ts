// Clients that keep sending Adds through the faults, retrying each request with its own id until
// it is acknowledged, the way a careful caller of Summa does.
import { randomInt, randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadCalculatorProtos, type AddResponseMessage } from '../../src/calculator/proto.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ClientOptions {
  grpcAddress: string;
  httpUrl: string;
  grpcClients: number;
  httpClients: number;
  /** Deadline of one call. */
  callTimeoutMs: number;
  /** A request still unacknowledged this long after its first attempt is given up. */
  giveUpAfterMs: number;
  /** Pause between one client's requests, to leave CPU for the services. */
  pauseMs: number;
}

export interface ClientStats {
  /** Request ids sent at least once, with their expected sums. */
  attempted: Map<string, bigint>;
  /** Request ids acknowledged, with the sum the calculator answered. */
  acked: Map<string, bigint>;
  /** Attempts after a request's first. */
  retries: number;
  /** Acknowledgements that were replays of an earlier commit. */
  replays: number;
  /** Requests given up without an acknowledgement. */
  gaveUp: number;
  /** Answers that must never happen (a wrong sum, a rejection of a valid request). */
  violations: string[];
  /** Failed attempts by kind, e.g. "grpc UNAVAILABLE", "http 503", "http fetch failed". */
  errors: Map<string, number>;
}

type Outcome = { kind: 'ack'; sum: bigint; replayed: boolean } | { kind: 'retry'; reason: string } | { kind: 'violation'; reason: string };

const FATAL_GRPC = new Set([grpc.status.INVALID_ARGUMENT, grpc.status.OUT_OF_RANGE, grpc.status.ALREADY_EXISTS, grpc.status.UNAUTHENTICATED]);

export class ChaosClients {
  readonly stats: ClientStats = { attempted: new Map(), acked: new Map(), retries: 0, replays: 0, gaveUp: 0, violations: [], errors: new Map() };
  private stopping = false;
  private aborted = false;
  private workers: Promise<void>[] = [];
  private readonly grpcClients: (grpc.Client & Record<string, Function>)[] = [];

  constructor(private readonly options: ClientOptions) {
    const { Client } = loadCalculatorProtos();
    for (let i = 0; i < options.grpcClients; i++) {
      // Reconnect quickly once the calculator is back: grpc-js backs off up to 120s by default.
      const client = new Client(options.grpcAddress, grpc.credentials.createInsecure(), {
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
        'grpc.min_reconnect_backoff_ms': 100,
      }) as grpc.Client & Record<string, Function>;
      this.grpcClients.push(client);
    }
  }

  start(): void {
    this.grpcClients.forEach((client, i) => this.workers.push(this.loop(`grpc-${i}`, (id, a, b) => this.viaGrpc(client, id, a, b))));
    for (let i = 0; i < this.options.httpClients; i++) this.workers.push(this.loop(`http-${i}`, (id, a, b) => this.viaHttp(id, a, b)));
  }

  /** No new requests; those under way are retried until acknowledged or given up. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers);
    for (const client of this.grpcClients) client.close();
  }

  /** Stops at once, giving up the requests under way (for cleaning up after a failure). */
  async abort(): Promise<void> {
    this.aborted = true;
    await this.stop();
  }

  private async loop(name: string, send: (requestId: string, num1: bigint, num2: bigint) => Promise<Outcome>): Promise<void> {
    while (!this.stopping) {
      const requestId = `${name}-${randomUUID()}`;
      // Up to ±2^52 each: the total of a long run leaves the 64-bit range only in the numeric column.
      const num1 = BigInt(randomInt(-(2 ** 46), 2 ** 46)) * 64n;
      const num2 = BigInt(randomInt(-(2 ** 46), 2 ** 46));
      await this.sendUntilAcked(requestId, num1, num2, send);
      await sleep(this.options.pauseMs);
    }
  }

  private async sendUntilAcked(requestId: string, num1: bigint, num2: bigint, send: (id: string, a: bigint, b: bigint) => Promise<Outcome>) {
    const expected = num1 + num2;
    this.stats.attempted.set(requestId, expected);
    const giveUpAt = Date.now() + this.options.giveUpAfterMs;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) this.stats.retries += 1;
      const outcome = await send(requestId, num1, num2);
      if (outcome.kind === 'ack') {
        if (outcome.sum !== expected) this.stats.violations.push(`${requestId}: answered ${outcome.sum}, expected ${expected}`);
        this.stats.acked.set(requestId, outcome.sum);
        if (outcome.replayed) this.stats.replays += 1;
        return;
      }
      if (outcome.kind === 'violation') {
        this.stats.violations.push(`${requestId}: ${outcome.reason}`);
        return;
      }
      this.stats.errors.set(outcome.reason, (this.stats.errors.get(outcome.reason) ?? 0) + 1);
      if (Date.now() >= giveUpAt || this.aborted) {
        this.stats.gaveUp += 1;
        return;
      }
      await sleep(Math.min(1_000, 50 * 2 ** Math.min(attempt, 5)));
    }
  }

  private viaGrpc(client: grpc.Client & Record<string, Function>, requestId: string, num1: bigint, num2: bigint): Promise<Outcome> {
    return new Promise((resolve) => {
      client.Add!(
        { num1: num1.toString(), num2: num2.toString(), request_id: requestId },
        { deadline: Date.now() + this.options.callTimeoutMs },
        (error: grpc.ServiceError | null, response: AddResponseMessage) => {
          if (!error) resolve({ kind: 'ack', sum: BigInt(response.sum), replayed: response.replayed });
          else if (FATAL_GRPC.has(error.code)) resolve({ kind: 'violation', reason: `gRPC ${grpc.status[error.code]}: ${error.details}` });
          else resolve({ kind: 'retry', reason: `grpc ${grpc.status[error.code]}` });
        },
      );
    });
  }

  private async viaHttp(requestId: string, num1: bigint, num2: bigint): Promise<Outcome> {
    let response: Response;
    try {
      response = await fetch(`${this.options.httpUrl}/v1/sums`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': requestId },
        body: JSON.stringify({ num1: num1.toString(), num2: num2.toString() }),
        signal: AbortSignal.timeout(this.options.callTimeoutMs),
      });
    } catch (error) {
      return { kind: 'retry', reason: `http ${(error as Error).name === 'TimeoutError' ? 'timeout' : 'fetch failed'}` };
    }
    const text = await response.text().catch(() => '');
    if (response.status === 200 || response.status === 201) {
      try {
        const body = JSON.parse(text) as { sum: string; replayed: boolean };
        return { kind: 'ack', sum: BigInt(body.sum), replayed: body.replayed };
      } catch {
        return { kind: 'retry', reason: 'http unreadable body' };
      }
    }
    if (response.status >= 500 || response.status === 429 || response.status === 408) return { kind: 'retry', reason: `http ${response.status}` };
    return { kind: 'violation', reason: `HTTP ${response.status}: ${text.slice(0, 200)}` };
  }
}
