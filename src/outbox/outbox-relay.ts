import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type Pg from 'pg';
import pg from '../platform/db/pg.ts';
import { backoffDelay, sleep } from '../platform/backoff.ts';
import type { Pool } from '../platform/db/pool.ts';
import { blamePublishFailure } from '../platform/kafka/publish-failures.ts';
import type { EventPublisher } from '../platform/kafka/publisher.ts';
import type { OutgoingRecord } from '../platform/kafka/records.ts';
import type { Logger } from '../platform/logger.ts';
import { endSpans, startProducerSpan } from '../platform/tracing/messaging-spans.ts';
import { traceHeadersOf } from '../platform/tracing/tracing.ts';
import type { RelayMetrics } from '../relay/metrics.ts';
import { OUTBOX_CHANNEL } from '../calculator/schema.ts';
import { OutboxVacuum, type OutboxVacuumOptions } from './outbox-vacuum.ts';
import { chargeOutboxRows, claimOutboxRows, deleteOutboxRows, releaseOutboxRows, type OutboxRow } from './outbox-store.ts';

export interface OutboxRelayOptions {
  batchSize: number;
  /** Claim-publish-delete loops run at once in this process; their batches overlap in time. */
  workers: number;
  /** How often to look for events when no notification arrives and the last claim found none. */
  pollIntervalMs: number;
  /**
   * How long to wait after a wake-up before claiming, so that a batch gathers several commits; only
   * while another worker's batch is in flight (under load). At rest a wake-up claims at once.
   */
  lingerMs: number;
  /**
   * How long claimed events are this relay's before another may claim them. A relay that dies or
   * hangs mid-publish holds its events this long; a publish that takes longer may see them published
   * once more by another relay (see outbox-store.ts for why that is safe).
   */
  leaseMs: number;
  /** Failed publishes that were an event's own fault (its topic does not exist, ...) before it is parked. */
  maxAttempts: number;
  /** When to vacuum the outbox (outbox-vacuum.ts); by default never: autovacuum alone. */
  vacuum?: OutboxVacuumOptions;
}

/** What became of the events of one claim. */
interface ClaimOutcome {
  published: OutboxRow[];
  /** Rows whose failure was their own, with its error. */
  failed: { rows: OutboxRow[]; error: unknown }[];
  /** Kafka was unavailable: this error, and the rows not published because of it. */
  unavailable?: { error: unknown; rows: OutboxRow[] };
}

/** Before retrying an event whose publish failed for its own sake: 1 s doubling to 1 min by its attempts. */
const EVENT_RETRY_MIN_MS = 1_000;
const EVENT_RETRY_MAX_MS = 60_000;

export class OutboxRelay {
  private stopped = false;
  /** Bumped by every notification; a worker that saw it change during a batch does not sleep. */
  private wakeups = 0;
  private sleepers = new Set<() => void>();
  private listener: Pg.Client | undefined;
  private loops: Promise<void>[] = [];
  /** Names this relay in the claim tokens it writes into claimed_by: host, process and a nonce. */
  private readonly relayId = `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private claims = 0;
  /** Workers between claim and delete right now. */
  private batchesInFlight = 0;
  private readonly vacuum: OutboxVacuum | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly databaseUrl: string,
    private readonly publisher: Pick<EventPublisher, 'publish'>,
    private readonly options: OutboxRelayOptions,
    private readonly logger: Logger,
    private readonly metrics: RelayMetrics,
  ) {
    this.vacuum = options.vacuum ? new OutboxVacuum(pool, options.vacuum, logger) : undefined;
  }

  start(): void {
    void this.listen();
    for (let worker = 0; worker < this.options.workers; worker += 1) this.loops.push(this.run());
  }

  /** Finishes the batches in flight (publish and delete), then stops. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await Promise.all(this.loops);
    await this.vacuum?.drain();
    await this.listener?.end().catch(() => {});
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      const wakeupsBefore = this.wakeups;
      let relayed: number;
      this.batchesInFlight += 1;
      try {
        relayed = await this.relayBatch();
        failures = 0;
      } catch (error) {
        this.batchesInFlight -= 1;
        this.metrics.publishErrors.inc();
        const retryInMs = backoffDelay(failures++, 100, 5_000);
        this.logger.warn({ err: error, retryInMs }, 'relaying outbox events failed; will retry');
        await this.sleep(retryInMs);
        continue;
      }
      this.batchesInFlight -= 1;
      const delayMs = pollDelayAfter(relayed, this.options);
      if (delayMs > 0 && this.wakeups === wakeupsBefore) {
        await this.sleep(delayMs);
        // Under load wake-ups come one after another, while another worker publishes: waiting a
        // moment lets one batch carry several commits. At rest nothing is in flight, and a wait
        // would only delay a lone event.
        if (this.options.lingerMs > 0 && this.batchesInFlight > 0 && !this.stopped) await sleep(this.options.lingerMs);
      }
    }
  }

  /**
   * One claim → publish → delete cycle; returns how many events it claimed (a full batch means more
   * may be waiting). No transaction and no connection is held while Kafka is asked: the claim and the
   * delete are one statement each. Events whose publish failed for their own sake are charged an
   * attempt (and parked at the limit) while the others go on; when Kafka is unavailable, whatever is
   * not published is released for the next try and the error is thrown, so the worker backs off.
   */
  async relayBatch(): Promise<number> {
    const claimant = `${this.relayId}#${++this.claims}`;
    const rows = await claimOutboxRows(this.pool, { limit: this.options.batchSize, claimant, leaseMs: this.options.leaseMs });
    if (rows.length === 0) return 0;
    const outcome: ClaimOutcome = { published: [], failed: [] };
    for (const [topic, group] of groupByTopic(rows)) {
      // Once Kafka failed one topic, the others would only wait for the same failure.
      if (outcome.unavailable) outcome.unavailable.rows.push(...group);
      else await this.publishRows(topic, group, outcome);
    }
    if (outcome.published.length > 0) {
      const deleted = await deleteOutboxRows(this.pool, outcome.published.map((row) => row.id), claimant);
      this.metrics.published.inc(outcome.published.length);
      this.vacuum?.deleted(deleted);
      if (deleted < outcome.published.length) {
        this.logger.warn(
          { published: outcome.published.length, deleted, leaseMs: this.options.leaseMs },
          'the lease on some events ran out while they were published: another relay took them over and publishes them again',
        );
      }
    }
    this.metrics.batchSize.observe(rows.length);
    for (const { rows: failed, error } of outcome.failed) await this.charge(failed, error, claimant);
    if (outcome.unavailable) {
      await releaseOutboxRows(this.pool, outcome.unavailable.rows.map((row) => row.id), claimant);
      throw outcome.unavailable.error;
    }
    return rows.length;
  }

  /**
   * Publishes `rows` of one topic and files them in `outcome`. When Kafka refuses some record among
   * them, the halves are published on their own, down to single events, so that only the events at
   * fault are charged: about 2·log2(n) more requests for one bad event in n.
   */
  private async publishRows(topic: string, rows: OutboxRow[], outcome: ClaimOutcome): Promise<void> {
    // A publish span for each event whose outbox row carries a traceparent, child of the request
    // that wrote it; the event's Kafka record then carries the publish span's traceparent instead.
    const spans = rows.map((row) => startProducerSpan({ topic, id: row.event_id }, row.headers));
    try {
      const startedAt = performance.now();
      await this.publisher.publish(topic, rows.map((row, index) => recordOf(row, spans[index])));
      this.metrics.publishSeconds.observe((performance.now() - startedAt) / 1000);
      endSpans(spans);
      outcome.published.push(...rows);
    } catch (error) {
      endSpans(spans, error);
      const blame = blamePublishFailure(error);
      if (blame === 'unavailable') {
        outcome.unavailable = { error, rows: [...rows] };
      } else if (blame === 'record' && rows.length > 1) {
        const half = Math.ceil(rows.length / 2);
        await this.publishRows(topic, rows.slice(0, half), outcome);
        if (outcome.unavailable) outcome.unavailable.rows.push(...rows.slice(half));
        else await this.publishRows(topic, rows.slice(half), outcome);
      } else {
        outcome.failed.push({ rows, error });
      }
    }
  }

  /** Counts a failure that was the events' own against them; logs those it parked as an error. */
  private async charge(rows: OutboxRow[], error: unknown, claimant: string): Promise<void> {
    const reason = error instanceof Error ? error.message : String(error);
    const retryInMs = backoffDelay(Math.max(...rows.map((row) => row.attempts)), EVENT_RETRY_MIN_MS, EVENT_RETRY_MAX_MS);
    const charged = await chargeOutboxRows(this.pool, rows.map((row) => row.id), claimant, {
      reason,
      retryInMs,
      maxAttempts: this.options.maxAttempts,
    });
    const topic = rows[0]!.topic;
    const parked = charged.filter((row) => row.parked);
    const retried = charged.filter((row) => !row.parked);
    if (retried.length > 0) {
      this.logger.warn(
        { topic, reason, eventIds: retried.map((row) => row.event_id), attempts: Math.max(...retried.map((row) => row.attempts)), retryInMs },
        `publishing ${retried.length} outbox event(s) failed for their own sake; retrying them later, the events behind them go on`,
      );
    }
    if (parked.length > 0) {
      this.metrics.parked.inc(parked.length);
      this.logger.error(
        { topic, reason, eventIds: parked.map((row) => row.event_id), attempts: this.options.maxAttempts },
        `parked ${parked.length} outbox event(s) after ${this.options.maxAttempts} failed attempts; ` +
          'no relay publishes them until they are released (summa outbox release, see docs/reliability.md)',
      );
    }
  }

  /** LISTEN on a connection of its own; reconnects after losing it. Polling covers the gaps. */
  private async listen(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      const client = new pg.Client({ connectionString: this.databaseUrl, application_name: 'summa-relay-listener' });
      // 'on', not 'once': a server that shuts down sends an error and then drops the connection,
      // and a second 'error' without a listener would crash the process.
      const lost = new Promise<void>((resolve) => {
        client.on('error', () => resolve());
        client.once('end', () => resolve());
      });
      try {
        await client.connect();
        client.on('notification', () => this.wake());
        await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
        this.listener = client;
        attempt = 0;
        this.wake(); // events may have committed while we were not listening
        await lost;
      } catch (error) {
        this.logger.debug({ err: error }, 'outbox listener connection failed');
      }
      this.listener = undefined;
      await client.end().catch(() => {});
      if (!this.stopped) await this.sleep(backoffDelay(attempt, 200, 5_000));
      attempt += 1;
    }
  }

  private wake(): void {
    this.wakeups += 1;
    for (const resolve of this.sleepers) resolve();
    this.sleepers.clear();
  }

  /** Like the platform's sleep, but also ended by a notification (wake) or by stop(). */
  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }
}

/**
 * After a claim that found events, the next comes this soon even without a wake-up: while events
 * flow more are likely to follow, and a NOTIFY is only a hint (one that failed, or a calculator of
 * an older release that sends none, would otherwise leave them to the full poll interval).
 */
export const BUSY_POLL_MS = 50;

/**
 * How long a worker waits for a wake-up before its next claim: not at all after a full batch (more
 * are waiting), BUSY_POLL_MS after a claim that found events, the poll interval after one that found
 * none.
 */
export function pollDelayAfter(claimed: number, options: Pick<OutboxRelayOptions, 'batchSize' | 'pollIntervalMs'>): number {
  if (claimed >= options.batchSize) return 0;
  if (claimed > 0) return Math.min(BUSY_POLL_MS, options.pollIntervalMs);
  return options.pollIntervalMs;
}

/** `rows` by topic, each topic's in claim order, the topics in the order they first appear. */
function groupByTopic(rows: OutboxRow[]): Map<string, OutboxRow[]> {
  const byTopic = new Map<string, OutboxRow[]>();
  for (const row of rows) {
    const group = byTopic.get(row.topic);
    if (group) group.push(row);
    else byTopic.set(row.topic, [row]);
  }
  return byTopic;
}

/** The Kafka record of an outbox row; `span` is its publish span, if it is traced. */
function recordOf(row: OutboxRow, span: ReturnType<typeof startProducerSpan>): OutgoingRecord {
  return {
    key: row.message_key,
    value: row.payload,
    headers: {
      ...row.headers,
      ...(span ? traceHeadersOf(span) : {}),
      'content-type': 'application/json',
      'summa-event-id': row.event_id,
    },
  };
}
