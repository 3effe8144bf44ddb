// Readers of GET /total through the faults, for a topology whose totals read from a replica: half
// of the reads plain (served by the replica, or by the primary while the replica is down), half
// waiting for a request just acknowledged (?after=). They count which server answered and how
// reads failed, so that a run shows the replica served reads and its faults were ridden out.
import { setTimeout as sleep } from 'node:timers/promises';

export interface TotalReadStats {
  /** Reads answered, by the server that served them (summa-read-source: replica or primary). */
  bySource: Record<string, number>;
  /** Reads with ?after= answered 200: the request was in the total. */
  afterAnswered: number;
  /** Failed reads by kind, e.g. "http 504" (?after= timed out), "fetch failed". */
  errors: Record<string, number>;
  /** Answers that must never happen: a 200 whose total or count is not a whole number. */
  violations: string[];
}

export interface TotalReadersOptions {
  /** Base URL of GET /total (nginx in front of the totals services). */
  url: string;
  readers: number;
  /** A request id acknowledged a moment ago, for ?after=; undefined while there is none. */
  recentRequest: () => string | undefined;
  pauseMs: number;
}

export class TotalReaders {
  readonly stats: TotalReadStats = { bySource: {}, afterAnswered: 0, errors: {}, violations: [] };
  private stopping = false;
  private workers: Promise<void>[] = [];

  constructor(private readonly options: TotalReadersOptions) {}

  start(): void {
    for (let i = 0; i < this.options.readers; i++) this.workers.push(this.loop(i));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers);
  }

  private async loop(index: number): Promise<void> {
    for (let turn = index; !this.stopping; turn++) {
      const after = turn % 2 === 1 ? this.options.recentRequest() : undefined;
      await this.read(after);
      await sleep(this.options.pauseMs);
    }
  }

  private async read(after: string | undefined): Promise<void> {
    const query = after === undefined ? '' : `?after=${encodeURIComponent(after)}&timeoutMs=3000`;
    let response: Response;
    try {
      response = await fetch(`${this.options.url}/total${query}`, { signal: AbortSignal.timeout(5_000) });
    } catch (error) {
      this.count(this.stats.errors, (error as Error).name === 'TimeoutError' ? 'timeout' : 'fetch failed');
      return;
    }
    const text = await response.text().catch(() => '');
    if (response.status !== 200) {
      this.count(this.stats.errors, `http ${response.status}`);
      return;
    }
    try {
      const body = JSON.parse(text) as { total: string; count: string | number };
      BigInt(body.total);
      BigInt(body.count);
    } catch {
      this.stats.violations.push(`GET /total${query} answered 200 with ${text.slice(0, 200)}`);
      return;
    }
    this.count(this.stats.bySource, response.headers.get('summa-read-source') ?? 'unknown');
    if (after !== undefined) this.stats.afterAnswered += 1;
  }

  private count(into: Record<string, number>, key: string): void {
    into[key] = (into[key] ?? 0) + 1;
  }
}
