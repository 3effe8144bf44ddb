import pg from 'pg';
import { backoffDelay, sleep } from '../platform/backoff.ts';
import type { Pool } from '../platform/db/pool.ts';
import type { EventPublisher } from '../platform/kafka/publisher.ts';
import type { OutgoingRecord } from '../platform/kafka/records.ts';
import type { Logger } from '../platform/logger.ts';
import { endSpans, startProducerSpan } from '../platform/tracing/messaging-spans.ts';
import { traceHeadersOf, type Span } from '../platform/tracing/tracing.ts';
import type { RelayMetrics } from '../relay/metrics.ts';
import { OUTBOX_CHANNEL } from '../calculator/schema.ts';
import { claimOutboxRows, deleteOutboxRows, type OutboxRow } from './outbox-store.ts';

export interface OutboxRelayOptions {
  batchSize: number;
  /** Claim-publish-delete loops run at once in this process; their batches overlap in time. */
  workers: number;
  /** How often to look for events when no notification arrives. */
  pollIntervalMs: number;
  /** How long to wait after a wake-up before claiming, so that a batch gathers several commits. */
  lingerMs: number;
}

export class OutboxRelay {
  private stopped = false;
  /** Bumped by every notification; a worker that saw it change during a batch does not sleep. */
  private wakeups = 0;
  private sleepers = new Set<() => void>();
  private listener: pg.Client | undefined;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly pool: Pool,
    private readonly databaseUrl: string,
    private readonly publisher: Pick<EventPublisher, 'publish'>,
    private readonly options: OutboxRelayOptions,
    private readonly logger: Logger,
    private readonly metrics: RelayMetrics,
  ) {}

  start(): void {
    void this.listen();
    for (let worker = 0; worker < this.options.workers; worker += 1) this.loops.push(this.run());
  }

  /** Finishes the batches in flight (publish and delete), then stops. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await Promise.all(this.loops);
    await this.listener?.end().catch(() => {});
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      const wakeupsBefore = this.wakeups;
      let relayed: number;
      try {
        relayed = await this.relayBatch();
        failures = 0;
      } catch (error) {
        this.metrics.publishErrors.inc();
        const retryInMs = backoffDelay(failures++, 100, 5_000);
        this.logger.warn({ err: error, retryInMs }, 'relaying outbox events failed; will retry');
        await this.sleep(retryInMs);
        continue;
      }
      if (relayed < this.options.batchSize && this.wakeups === wakeupsBefore) {
        await this.sleep(this.options.pollIntervalMs);
        // Under load every commit notifies; waiting a moment lets one batch carry several commits.
        if (this.options.lingerMs > 0 && !this.stopped) await sleep(this.options.lingerMs);
      }
    }
  }

  /** One claim → publish → delete cycle in one transaction; returns how many events it relayed. */
  async relayBatch(): Promise<number> {
    const client = await this.pool.connect();
    try {
      // The deletion need not survive a crash of PostgreSQL: if it is lost, the rows come back and
      // are published again, and the consumer skips them by event id. Not waiting for the WAL flush
      // spares one fsync per batch.
      await client.query('BEGIN; SET LOCAL synchronous_commit TO off');
      const rows = await claimOutboxRows(client, this.options.batchSize);
      if (rows.length > 0) {
        // A publish span for each event whose outbox row carries a traceparent, child of the request
        // that wrote it; the event's Kafka record then carries the publish span's traceparent instead.
        const spans = rows.map((row) => startProducerSpan({ topic: row.topic, id: row.event_id }, row.headers));
        try {
          const startedAt = performance.now();
          for (const [topic, records] of groupByTopic(rows, spans)) await this.publisher.publish(topic, records);
          this.metrics.publishSeconds.observe((performance.now() - startedAt) / 1000);
        } catch (error) {
          endSpans(spans, error);
          throw error;
        }
        endSpans(spans);
        await deleteOutboxRows(client, rows);
      }
      await client.query('COMMIT');
      if (rows.length > 0) {
        this.metrics.published.inc(rows.length);
        this.metrics.batchSize.observe(rows.length);
      }
      return rows.length;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
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

/** The Kafka records of `rows` by topic; `spans` holds each row's publish span, at the row's index. */
function groupByTopic(rows: OutboxRow[], spans: (Span | undefined)[]): Map<string, OutgoingRecord[]> {
  const byTopic = new Map<string, OutgoingRecord[]>();
  rows.forEach((row, index) => {
    const span = spans[index];
    const record: OutgoingRecord = {
      key: row.message_key,
      value: row.payload,
      headers: {
        ...row.headers,
        ...(span ? traceHeadersOf(span) : {}),
        'content-type': 'application/json',
        'summa-event-id': row.event_id,
      },
    };
    const records = byTopic.get(row.topic);
    if (records) records.push(record);
    else byTopic.set(row.topic, [record]);
  });
  return byTopic;
}
