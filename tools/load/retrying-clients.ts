// Clients that keep sending Adds through the faults, the way careful callers of Summa do: each
// request is retried with its own id until it is acknowledged, every attempt after a failure going
// to the next calculator, as a load balancer would send it. Besides the plain requests they send
// the awkward ones: the same request at the same moment to two calculators (twins), and other
// numbers under an id that is already taken (conflicts), which must be refused and never counted.
import { randomInt, randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadCalculatorProtos, type AddResponseMessage } from '../../src/calculator/proto.ts';
import { setTimeout as sleep } from 'node:timers/promises';

/** Where one calculator instance listens. */
export interface CalculatorEndpoint {
  grpcAddress: string;
  httpUrl: string;
}

export interface ClientOptions {
  /** Every calculator instance; the clients spread their requests over all of them. */
  calculators: CalculatorEndpoint[];
  grpcClients: number;
  httpClients: number;
  /**
   * Pairs of clients that send each of their requests twice at the same moment, under the same id
   * and with the same numbers, to two calculators: one over gRPC, the other over HTTP.
   */
  twinPairs: number;
  /**
   * Clients that send other numbers under a taken id: one acknowledged earlier, or a new one that
   * another request with other numbers claims at the same moment on the other calculator.
   */
  conflictClients: number;
  /** Deadline of one call. */
  callTimeoutMs: number;
  /** A request still unanswered this long after its first attempt is given up. */
  giveUpAfterMs: number;
  /** Pause between one client's requests, to leave CPU for the services. */
  pauseMs: number;
  /**
   * The calculator's IDEMPOTENCY_WINDOW_SECONDS in ms, when short enough to matter: after it an id
   * is free again, so other numbers under it may be acknowledged as a new request. Conflicts then
   * reuse only ids acknowledged within half of it, and an id answered as new twice, the second time
   * more than the window after the first, is no violation (it was recorded twice, as documented).
   */
  idempotencyWindowMs?: number;
}

/** A conflicting request the calculator refused: its numbers must never be counted. */
export interface Refusal {
  requestId: string;
  /** The sum of the refused numbers (never the sum recorded under the id). */
  sum: bigint;
}

export interface ClientStats {
  /** Request ids sent at least once, with their expected sums. */
  attempted: Map<string, bigint>;
  /** Request ids acknowledged, with the sum the calculator answered. */
  acked: Map<string, bigint>;
  /** Attempts after a request's first. */
  retries: number;
  /** Answers that were replays of an earlier commit (each twin pair gets at least one). */
  replays: number;
  /** Requests given up without an answer. */
  gaveUp: number;
  /** Answers that must never happen (a wrong sum, a valid request refused, a conflict accepted). */
  violations: string[];
  /** Failed attempts by kind, e.g. "grpc UNAVAILABLE", "http 503", "http fetch failed". */
  errors: Map<string, number>;
  /** Requests sent by twin pairs, and how many of them both twins saw acknowledged. */
  twins: { sent: number; bothAcked: number };
  /** Conflicting requests sent, and those refused (ALREADY_EXISTS over gRPC, 422 over HTTP). */
  conflicts: { sent: number; refused: Refusal[] };
  /** Ids acknowledged as new again after the idempotency window (other numbers, or a late twin or retry). */
  newAfterWindow: number;
}

type Transport = 'grpc' | 'http';

type Answer =
  | { kind: 'ack'; sum: bigint; replayed: boolean }
  | { kind: 'refused'; reason: string }
  | { kind: 'retry'; reason: string }
  | { kind: 'violation'; reason: string };

/** How a request ended: answered, or given up after retrying. */
type Settled = Exclude<Answer, { kind: 'retry' }> | { kind: 'gave-up' };

interface Request {
  requestId: string;
  num1: bigint;
  num2: bigint;
}

const FATAL_GRPC = new Set([grpc.status.INVALID_ARGUMENT, grpc.status.OUT_OF_RANGE, grpc.status.UNAUTHENTICATED]);

export class ChaosClients {
  readonly stats: ClientStats = {
    attempted: new Map(),
    acked: new Map(),
    retries: 0,
    replays: 0,
    gaveUp: 0,
    violations: [],
    errors: new Map(),
    twins: { sent: 0, bothAcked: 0 },
    conflicts: { sent: 0, refused: [] },
    newAfterWindow: 0,
  };
  private stopping = false;
  private aborted = false;
  private workers: Promise<void>[] = [];
  /** One channel per client and calculator. */
  private readonly channels = new Map<string, grpc.Client & Record<string, Function>>();
  /** Acknowledged ids, for the conflicts to pick from. */
  private readonly ackedIds: string[] = [];
  /** When each of ackedIds was first acknowledged (ms), in the same order. */
  private readonly ackedAt: number[] = [];

  constructor(private readonly options: ClientOptions) {
    if (options.calculators.length === 0) throw new Error('no calculator to send to');
  }

  start(): void {
    const n = this.options.calculators.length;
    let index = 0;
    for (let i = 0; i < this.options.grpcClients; i++) this.workers.push(this.plainLoop(`grpc-${i}`, 'grpc', index++ % n));
    for (let i = 0; i < this.options.httpClients; i++) this.workers.push(this.plainLoop(`http-${i}`, 'http', index++ % n));
    for (let i = 0; i < this.options.twinPairs; i++) this.workers.push(this.twinLoop(`twin-${i}`, i % n));
    for (let i = 0; i < this.options.conflictClients; i++) this.workers.push(this.conflictLoop(`conflict-${i}`, i % n));
  }

  /** The request id acknowledged last, if any. */
  lastAcked(): string | undefined {
    return this.ackedIds.at(-1);
  }

  /** No new requests; those under way are retried until answered or given up. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers);
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }

  /** Stops at once, giving up the requests under way (for cleaning up after a failure). */
  async abort(): Promise<void> {
    this.aborted = true;
    await this.stop();
  }

  /** Plain requests, the first attempt of each to the next calculator in turn. */
  private async plainLoop(name: string, transport: Transport, first: number): Promise<void> {
    for (let turn = first; !this.stopping; turn++) {
      const request = newRequest(name);
      this.stats.attempted.set(request.requestId, request.num1 + request.num2);
      this.settle(request, await this.send(name, transport, turn, request));
      await sleep(this.options.pauseMs);
    }
  }

  /**
   * Each request twice at the same moment, to two calculators by two transports: exactly one of
   * them may be recorded as new, the other is answered as its replay (both, after retries).
   */
  private async twinLoop(name: string, first: number): Promise<void> {
    for (let turn = first; !this.stopping; turn++) {
      const request = newRequest(name);
      this.stats.attempted.set(request.requestId, request.num1 + request.num2);
      this.stats.twins.sent += 1;
      const sentAt = Date.now();
      const [viaGrpc, viaHttp] = await Promise.all([
        this.send(`${name}-a`, 'grpc', turn, request),
        this.send(`${name}-b`, 'http', turn + 1, request),
      ]);
      this.settle(request, viaGrpc);
      this.settle(request, viaHttp);
      if (viaGrpc.kind === 'ack' && viaHttp.kind === 'ack') {
        this.stats.twins.bothAcked += 1;
        if (!viaGrpc.replayed && !viaHttp.replayed) {
          if (this.pastWindow(sentAt)) this.stats.newAfterWindow += 1;
          else this.stats.violations.push(`${request.requestId}: both twins were answered as the first`);
        }
      }
      await sleep(this.options.pauseMs);
    }
  }

  /** Turn about: other numbers under an acknowledged id, and two requests racing for a new id. */
  private async conflictLoop(name: string, first: number): Promise<void> {
    for (let turn = first; !this.stopping; turn++) {
      const transport: Transport = turn % 2 === 0 ? 'grpc' : 'http';
      const taken = this.takenId();
      if (turn % 2 === 0 && taken !== undefined) await this.reuse(name, transport, turn, taken);
      else await this.race(name, turn);
      await sleep(this.options.pauseMs);
    }
  }

  /** Other numbers under an id acknowledged earlier: must be refused, and the first numbers stand. */
  private async reuse(name: string, transport: Transport, turn: number, requestId: string): Promise<void> {
    const original = this.stats.acked.get(requestId)!;
    const request = otherNumbers({ requestId, num1: 0n, num2: original });
    this.stats.conflicts.sent += 1;
    const ackedAt = this.ackedAt[this.ackedIds.lastIndexOf(requestId)]!;
    const settled = await this.send(name, transport, turn, request);
    if (settled.kind === 'refused') this.stats.conflicts.refused.push({ requestId, sum: request.num1 + request.num2 });
    else if (settled.kind === 'ack' && this.pastWindow(ackedAt)) this.stats.newAfterWindow += 1;
    else if (settled.kind === 'ack') this.stats.violations.push(`${requestId}: other numbers acknowledged (sum ${settled.sum}) under an id already acknowledged with ${original}`);
    else if (settled.kind === 'violation') this.stats.violations.push(`${requestId}: ${settled.reason}`);
  }

  /** Two requests with other numbers under one new id, at the same moment, to two calculators: one wins, the other is refused. */
  private async race(name: string, turn: number): Promise<void> {
    const one = newRequest(name);
    const other = otherNumbers(one);
    this.stats.attempted.set(one.requestId, one.num1 + one.num2);
    this.stats.conflicts.sent += 1;
    const sentAt = Date.now();
    const [first, second] = await Promise.all([this.send(`${name}-a`, 'grpc', turn, one), this.send(`${name}-b`, 'http', turn + 1, other)]);
    const outcomes = [
      { request: one, settled: first },
      { request: other, settled: second },
    ];
    const acks = outcomes.filter((o) => o.settled.kind === 'ack');
    const refusals = outcomes.filter((o) => o.settled.kind === 'refused');
    if (acks.length === 2 && this.pastWindow(sentAt)) this.stats.newAfterWindow += 1;
    else if (acks.length === 2) this.stats.violations.push(`${one.requestId}: two requests with other numbers both acknowledged`);
    else if (acks.length === 1) this.settle(acks[0]!.request, acks[0]!.settled);
    if (refusals.length === 2) this.stats.violations.push(`${one.requestId}: both racing requests refused, so neither was recorded`);
    else if (refusals.length === 1) this.stats.conflicts.refused.push({ requestId: one.requestId, sum: refusals[0]!.request.num1 + refusals[0]!.request.num2 });
    for (const { settled } of outcomes) if (settled.kind === 'violation') this.stats.violations.push(`${one.requestId}: ${settled.reason}`);
  }

  /** An acknowledged id for a conflict to reuse: one the calculator still remembers, when ids are remembered briefly. */
  private takenId(): string | undefined {
    let from = 0;
    const window = this.options.idempotencyWindowMs;
    if (window !== undefined) {
      const since = Date.now() - window / 2;
      from = this.ackedAt.findIndex((at) => at >= since);
      if (from < 0) return undefined;
    }
    return this.ackedIds.length === from ? undefined : this.ackedIds[randomInt(from, this.ackedIds.length)]!;
  }

  /** Whether the idempotency window (if one is set) has passed since `since`: an id is free again after it. */
  private pastWindow(since: number): boolean {
    return this.options.idempotencyWindowMs !== undefined && Date.now() - since > this.options.idempotencyWindowMs;
  }

  /** The answer to a request no other numbers were sent under. */
  private settle(request: Request, settled: Settled): void {
    const expected = request.num1 + request.num2;
    switch (settled.kind) {
      case 'ack':
        if (settled.sum !== expected) this.stats.violations.push(`${request.requestId}: answered ${settled.sum}, expected ${expected}`);
        if (!this.stats.acked.has(request.requestId)) {
          this.ackedIds.push(request.requestId);
          this.ackedAt.push(Date.now());
        }
        this.stats.acked.set(request.requestId, settled.sum);
        if (settled.replayed) this.stats.replays += 1;
        return;
      case 'refused':
        this.stats.violations.push(`${request.requestId}: refused though no other numbers were sent under it (${settled.reason})`);
        return;
      case 'violation':
        this.stats.violations.push(`${request.requestId}: ${settled.reason}`);
        return;
      case 'gave-up':
        return;
    }
  }

  /** Sends until answered or given up; attempt k goes to calculator `turn + k` (mod their number). */
  private async send(client: string, transport: Transport, turn: number, request: Request): Promise<Settled> {
    const giveUpAt = Date.now() + this.options.giveUpAfterMs;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) this.stats.retries += 1;
      const calculator = (turn + attempt) % this.options.calculators.length;
      const answer = transport === 'grpc' ? await this.viaGrpc(client, calculator, request) : await this.viaHttp(calculator, request);
      if (answer.kind !== 'retry') return answer;
      this.stats.errors.set(answer.reason, (this.stats.errors.get(answer.reason) ?? 0) + 1);
      if (Date.now() >= giveUpAt || this.aborted) {
        this.stats.gaveUp += 1;
        return { kind: 'gave-up' };
      }
      await sleep(Math.min(1_000, 50 * 2 ** Math.min(attempt, 5)));
    }
  }

  private channel(client: string, calculator: number): grpc.Client & Record<string, Function> {
    const key = `${client}@${calculator}`;
    let channel = this.channels.get(key);
    if (!channel) {
      const { Client } = loadCalculatorProtos();
      // Reconnect quickly once the calculator is back: grpc-js backs off up to 120s by default.
      channel = new Client(this.options.calculators[calculator]!.grpcAddress, grpc.credentials.createInsecure(), {
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
        'grpc.min_reconnect_backoff_ms': 100,
      }) as grpc.Client & Record<string, Function>;
      this.channels.set(key, channel);
    }
    return channel;
  }

  private viaGrpc(client: string, calculator: number, { requestId, num1, num2 }: Request): Promise<Answer> {
    return new Promise((resolve) => {
      this.channel(client, calculator).Add!(
        { num1: num1.toString(), num2: num2.toString(), request_id: requestId },
        { deadline: Date.now() + this.options.callTimeoutMs },
        (error: grpc.ServiceError | null, response: AddResponseMessage) => {
          if (!error) resolve({ kind: 'ack', sum: BigInt(response.sum), replayed: response.replayed });
          else if (error.code === grpc.status.ALREADY_EXISTS) resolve({ kind: 'refused', reason: `gRPC ALREADY_EXISTS: ${error.details}` });
          else if (FATAL_GRPC.has(error.code)) resolve({ kind: 'violation', reason: `gRPC ${grpc.status[error.code]}: ${error.details}` });
          else resolve({ kind: 'retry', reason: `grpc ${grpc.status[error.code]}` });
        },
      );
    });
  }

  private async viaHttp(calculator: number, { requestId, num1, num2 }: Request): Promise<Answer> {
    let response: Response;
    try {
      response = await fetch(`${this.options.calculators[calculator]!.httpUrl}/v1/sums`, {
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
    if (response.status === 422) return { kind: 'refused', reason: `HTTP 422: ${text.slice(0, 200)}` };
    if (response.status >= 500 || response.status === 429 || response.status === 408) return { kind: 'retry', reason: `http ${response.status}` };
    return { kind: 'violation', reason: `HTTP ${response.status}: ${text.slice(0, 200)}` };
  }
}

function newRequest(client: string): Request {
  // Up to ±2^52 each: the total of a long run leaves the 64-bit range only in the numeric column.
  return { requestId: `${client}-${randomUUID()}`, num1: BigInt(randomInt(-(2 ** 46), 2 ** 46)) * 64n, num2: BigInt(randomInt(-(2 ** 46), 2 ** 46)) };
}

/** New numbers under the same id whose sum differs from `request`'s, so that counting them would show. */
function otherNumbers(request: Request): Request {
  for (;;) {
    const other = { ...newRequest('x'), requestId: request.requestId };
    if (other.num1 + other.num2 !== request.num1 + request.num2) return other;
  }
}
