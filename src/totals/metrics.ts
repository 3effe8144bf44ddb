import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ReplicaLag } from '../platform/db/replication-lag.ts';
import type { PartitionStall } from '../platform/kafka/partition-stalls.ts';
import { scrapedGauge, scrapeTimeReader, withoutSamples } from '../platform/metrics.ts';
import type { TotalRead } from './total-reads.ts';
import type { TotalsStore } from './totals-store.ts';

export interface TotalsMetrics {
  consumed: Counter;
  applied: Counter;
  duplicates: Counter;
  rejected: Counter;
  quarantined: Counter;
  deadLetterFailures: Counter;
  endToEndSeconds: Histogram;
  fetches: Counter;
  recordsFetched: Counter;
  offsetCommits: Counter;
}

export function createTotalsMetrics(registry: Registry, store: TotalsStore): TotalsMetrics {
  const readTotal = scrapeTimeReader(() => store.readTotal());
  scrapedGauge(registry, 'summa_total_value', 'The running total (as a float for graphs; GET /total has the exact value).', readTotal, (t) => Number(t.total));
  scrapedGauge(registry, 'summa_total_events', 'Events applied to the running total.', readTotal, (t) => t.count);
  return {
    consumed: new Counter({
      name: 'summa_totals_records_consumed_total',
      help: 'Kafka records handed to the applier (redeliveries included).',
      registers: [registry],
    }),
    applied: new Counter({ name: 'summa_totals_events_applied_total', help: 'Events added to the total.', registers: [registry] }),
    duplicates: new Counter({
      name: 'summa_totals_duplicates_skipped_total',
      help: 'Events delivered again and skipped because they were already applied.',
      registers: [registry],
    }),
    rejected: new Counter({
      name: 'summa_totals_records_rejected_total',
      help: 'Records that were not valid events, or events PostgreSQL refused, kept in totals.rejected_records (and sent to the dead-letter topic).',
      registers: [registry],
    }),
    quarantined: new Counter({
      name: 'summa_totals_events_quarantined_total',
      help: 'Valid events not applied because they are older than the dedup window (they may have been applied before); kept in totals.rejected_records for `summa dlq`.',
      registers: [registry],
    }),
    deadLetterFailures: new Counter({
      name: 'summa_totals_dead_letter_failures_total',
      help: 'Rejected records the dead-letter topic did not take (missing, unwritable, unreachable); they are kept in totals.rejected_records only.',
      registers: [registry],
    }),
    endToEndSeconds: new Histogram({
      name: 'summa_end_to_end_latency_seconds',
      help: 'Time from the calculator accepting a sum to the sum being applied to the total.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    // Their ratio is the records per fetch, what the broker's and the consumer's cost per record depend on.
    fetches: new Counter({
      name: 'summa_totals_fetches_total',
      help: 'Fetch responses from Kafka, empty ones (the wait ran out) included.',
      registers: [registry],
    }),
    recordsFetched: new Counter({
      name: 'summa_totals_records_fetched_total',
      help: 'Records in those fetch responses (read ahead of the applier; redeliveries included).',
      registers: [registry],
    }),
    offsetCommits: new Counter({
      name: 'summa_totals_offset_commits_total',
      help: 'Offset commits Kafka accepted from this consumer.',
      registers: [registry],
    }),
  };
}

/**
 * summa_totals_consumer_lag_records{partition}: records not yet committed by this member, per
 * partition assigned to it, asked of the broker at scrape time.
 */
export function registerConsumerLagGauge(registry: Registry, lag: () => Promise<Map<number, bigint>>): void {
  const readLag = scrapeTimeReader(lag);
  new Gauge({
    name: 'summa_totals_consumer_lag_records',
    help: 'Records in the partitions assigned to this consumer that it has not committed yet.',
    labelNames: ['partition'],
    registers: [registry],
    async collect() {
      const lags = await readLag();
      this.reset();
      for (const [partition, records] of lags ?? []) this.set({ partition: String(partition) }, Number(records));
    },
  });
}

/**
 * summa_totals_partitions_stalled{partition,reason}: 1 for each partition that does not move on,
 * read from the consumer at scrape time.
 */
export function registerStalledPartitionsGauge(registry: Registry, stalled: () => PartitionStall[]): void {
  new Gauge({
    name: 'summa_totals_partitions_stalled',
    help: 'Partitions this consumer does not move on: stopped at an event of a newer version, or behind a batch that keeps failing.',
    labelNames: ['partition', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const stall of stalled()) this.set({ partition: String(stall.partition), reason: stall.reason }, 1);
    },
  });
}

/**
 * The read replica as GET /total meets it: its lag (summa_totals_replica_lag_seconds, asked of the
 * replica at scrape time, and set again by every read there), whether it answers
 * (summa_totals_replica_up), and reads per server (summa_totals_reads_total{source,fallback}).
 * Returns what each read is told to.
 */
export function registerReplicaReadMetrics(registry: Registry, readLag: (() => Promise<ReplicaLag | undefined>) | undefined): (read: TotalRead, fallback: boolean) => void {
  const reads = new Counter({
    name: 'summa_totals_reads_total',
    help: 'Totals read for GET /total, by the server that served them; fallback="true": the replica failed and the primary served it.',
    labelNames: ['source', 'fallback'],
    registers: [registry],
  });
  if (!readLag) return (read) => reads.inc({ source: read.source, fallback: 'false' });

  let lagAtLastRead: number | undefined;
  const lagAtScrape = scrapeTimeReader(async () => (await readLag()) ?? null);
  const lag = new Gauge({
    name: 'summa_totals_replica_lag_seconds',
    help: 'How far behind the primary the read replica is: 0 while it has replayed all it received and streams, else the time since its last replayed commit. No sample while it does not answer.',
    registers: [registry],
    async collect() {
      const read = await lagAtScrape();
      const seconds = read === undefined ? undefined : (read?.seconds ?? lagAtLastRead);
      if (seconds === undefined) withoutSamples(this);
      else this.set(seconds);
    },
  });
  new Gauge({
    name: 'summa_totals_replica_up',
    help: 'Whether the read replica answered at scrape time (1) or not (0); reads fall back to the primary while it does not.',
    registers: [registry],
    async collect() {
      this.set((await lagAtScrape()) === undefined ? 0 : 1);
    },
  });
  return (read, fallback) => {
    reads.inc({ source: read.source, fallback: String(fallback) });
    if (read.replicaLag?.seconds != null) {
      lagAtLastRead = read.replicaLag.seconds;
      lag.set(lagAtLastRead);
    }
  };
}
