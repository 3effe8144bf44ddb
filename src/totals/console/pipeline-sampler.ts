// The console's live figures: one sample a second of what the totals service can read cheaply (the
// total from its own schema, the calculator's outbox from the same database) and, every few seconds,
// what `summa status` asks of every component. It samples only while someone watches, and keeps the
// last minutes so that a page opened later draws its charts at once.
import type { Pool } from '../../platform/db/pool.ts';
import type { Logger } from '../../platform/logger.ts';
import { readOutboxBacklog, type OutboxBacklog } from '../../outbox/outbox-store.ts';
import type { TotalsStore } from '../totals-store.ts';
import type { ComponentHealth, PipelineStatus } from './pipeline-status.ts';
import type { PartitionLag } from '../../cli/status-report.ts';
import { latencyPercentiles, type BucketCounts, type LatencyPercentiles } from './latency-window.ts';
import { ackWindow, type AckReadings } from './ack-latency.ts';

export interface PipelineSample {
  /** When it was taken, ms since the epoch (this host's clock). */
  at: number;
  /** The exact total, as a decimal string; null when the database did not answer. */
  total: string | null;
  count: number | null;
  /** Adds accepted per second by the calculators (the outbox's id sequence), since the previous sample. */
  acceptedPerSecond: number | null;
  /** Events applied to the total per second, since the previous sample. */
  appliedPerSecond: number | null;
  outbox: OutboxBacklog | null;
  /** Accepted → applied, for the events this instance applied in the last LATENCY_WINDOW samples. */
  endToEnd: LatencyPercentiles | null;
  /** Arrival → answer of the Adds every calculator answered in the last LATENCY_WINDOW samples; null when no calculator could be read, and in the first sample. */
  ack: LatencyPercentiles | null;
  consumerLag: PartitionLag[];
  /** The sum of the known lags. */
  totalLag: number | null;
  components: ComponentHealth[];
  /** Why some figures are missing. */
  problems: string[];
}

export interface SamplerOptions {
  pool: Pool;
  store: TotalsStore;
  status: PipelineStatus;
  logger: Logger;
  intervalMs?: number;
  /** How much history is kept (and sent to a new page). */
  historySize?: number;
  /** How often the components are probed; each probe may take a few seconds when some hang. */
  statusIntervalMs?: number;
  /** This instance's end-to-end latency histogram, cumulative. */
  endToEnd?: () => Promise<BucketCounts>;
  /** Every calculator's cumulative ack latency histogram, and which ones could not be read. */
  ack?: () => Promise<{ readings: AckReadings; problems: string[] }>;
}

/** Samples the latency percentiles span: enough events to say something at a few Adds a second. */
const LATENCY_WINDOW = 10;

// Every accepted Add writes one outbox row in the same statement, numbered by this sequence, and a
// replay writes none: its last value counts accepted Adds (a rolled-back Add leaves a gap, rarely).
const ACCEPTED_SQL = `SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END::text AS accepted FROM calculator.outbox_id_seq`;

export class PipelineSampler {
  private readonly history: PipelineSample[] = [];
  private readonly listeners = new Map<(sample: PipelineSample) => void, (() => void) | undefined>();
  private readonly latencyReadings: BucketCounts[] = [];
  private readonly ackReadings: AckReadings[] = [];
  private timer: NodeJS.Timeout | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private previous: { at: number; count: number | null; accepted: bigint | null } | undefined;
  private latestStatus: { components: ComponentHealth[]; consumerLag: PartitionLag[]; problem?: string } = { components: [], consumerLag: [] };
  private sampling = false;
  private probing = false;
  private stopped = false;

  constructor(private readonly options: SamplerOptions) {}

  /** The samples kept, oldest first. */
  recent(): PipelineSample[] {
    return [...this.history];
  }

  /**
   * Calls listener with every new sample until the returned function is called; onStop when the
   * sampler stops (an event stream ends its response then: an open stream would hold the HTTP
   * server's close until the shutdown timeout).
   */
  subscribe(listener: (sample: PipelineSample) => void, onStop?: () => void): () => void {
    // A page reconnecting while the service stops is ended at once, as the others were.
    if (this.stopped) {
      onStop?.();
      return () => {};
    }
    this.listeners.set(listener, onStop);
    if (this.listeners.size === 1) this.begin();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.pause();
    };
  }

  stop(): void {
    this.stopped = true;
    const stops = [...this.listeners.values()];
    this.listeners.clear();
    for (const onStop of stops) onStop?.();
    this.pause();
  }

  private begin(): void {
    if (this.stopped || this.timer) return;
    const interval = this.options.intervalMs ?? 1_000;
    this.timer = setInterval(() => void this.sample(), interval);
    void this.sample();
    this.refreshStatus();
  }

  private pause(): void {
    clearInterval(this.timer);
    clearTimeout(this.statusTimer);
    this.timer = undefined;
    this.statusTimer = undefined;
    // A window spanning the time nobody watched would not be the last seconds.
    this.ackReadings.length = 0;
  }

  /** One probe at a time: a hung component must not pile probes up, nor a page that leaves and comes back start a second chain. */
  private refreshStatus(): void {
    if (this.probing) return;
    this.probing = true;
    const next = () => {
      this.probing = false;
      clearTimeout(this.statusTimer);
      if (this.timer) this.statusTimer = setTimeout(() => this.refreshStatus(), this.options.statusIntervalMs ?? 2_000);
    };
    this.options.status
      .probe()
      .then((status) => {
        this.latestStatus = status;
      })
      .catch((error: Error) => {
        this.latestStatus = { ...this.latestStatus, problem: `component status: ${error.message}` };
      })
      .finally(next);
  }

  private async sample(): Promise<void> {
    // A database that takes longer than the interval gets one query at a time, not a queue of them.
    if (this.sampling) return;
    this.sampling = true;
    try {
      const problems: string[] = [];
      const failed = (what: string) => (error: Error) => {
        problems.push(`${what}: ${error.message}`);
        return null;
      };
      const [total, accepted, outbox, buckets, acks] = await Promise.all([
        this.options.store.readTotal().catch(failed('total')),
        this.options.pool.query<{ accepted: string }>(ACCEPTED_SQL).then((result) => BigInt(result.rows[0]!.accepted), failed('accepted Adds (calculator.outbox_id_seq)')),
        readOutboxBacklog(this.options.pool).catch(failed('outbox backlog')),
        this.options.endToEnd ? this.options.endToEnd().catch(failed('end-to-end latency')) : Promise.resolve(null),
        this.options.ack ? this.options.ack().catch(failed('ack latency')) : Promise.resolve(null),
      ]);
      let endToEnd: LatencyPercentiles | null = null;
      if (buckets) {
        endToEnd = latencyPercentiles(buckets, this.latencyReadings[0]);
        this.latencyReadings.push(buckets);
        if (this.latencyReadings.length > LATENCY_WINDOW) this.latencyReadings.shift();
      }
      let ack: LatencyPercentiles | null = null;
      if (acks) {
        problems.push(...acks.problems);
        // The first reading has nothing to be differenced with: a calculator's counts since it
        // started are no figure for the last seconds.
        if (acks.readings.size > 0 && this.ackReadings.length > 0) ack = latencyPercentiles(ackWindow(acks.readings, this.ackReadings), undefined);
        this.ackReadings.push(acks.readings);
        if (this.ackReadings.length > LATENCY_WINDOW) this.ackReadings.shift();
      }
      const at = Date.now();
      const previous = this.previous;
      const seconds = previous ? (at - previous.at) / 1000 : 0;
      const rate = (now: number | bigint | null, before: number | bigint | null | undefined) =>
        now === null || before === null || before === undefined || seconds <= 0 ? null : Math.max(0, Number(now) - Number(before)) / seconds;
      this.previous = { at, count: total?.count ?? null, accepted };
      const status = this.latestStatus;
      if (status.problem) problems.push(status.problem);
      const known = status.consumerLag.filter((p) => p.lag !== null);
      const sample: PipelineSample = {
        at,
        total: total?.total ?? null,
        count: total?.count ?? null,
        acceptedPerSecond: rate(accepted, previous?.accepted),
        appliedPerSecond: rate(total?.count ?? null, previous?.count),
        outbox,
        endToEnd,
        ack,
        consumerLag: status.consumerLag,
        totalLag: known.length === 0 ? null : known.reduce((sum, p) => sum + p.lag!, 0),
        components: status.components,
        problems,
      };
      this.history.push(sample);
      if (this.history.length > (this.options.historySize ?? 300)) this.history.shift();
      for (const listener of this.listeners.keys()) listener(sample);
    } catch (error) {
      this.options.logger.warn({ err: error }, 'console sample failed');
    } finally {
      this.sampling = false;
    }
  }
}
