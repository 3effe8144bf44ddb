import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Pool } from '../platform/db/pool.ts';
import { scrapedGauge, scrapeTimeReader } from '../platform/metrics.ts';
import { readOutboxBacklog } from '../outbox/outbox-store.ts';

export interface RelayMetrics {
  published: Counter;
  publishErrors: Counter;
  parked: Counter;
  publishSeconds: Histogram;
  batchSize: Histogram;
  produceRequests: Counter;
  recordsProduced: Counter;
}

export function createRelayMetrics(registry: Registry, pool: Pool, dedupWindowSeconds: number): RelayMetrics {
  // Read at scrape time, so the figures are the database's, shared by every relay instance.
  const readBacklog = scrapeTimeReader(() => readOutboxBacklog(pool));
  scrapedGauge(registry, 'summa_outbox_pending_events', 'Events in the outbox not yet published (parked ones left out).', readBacklog, (b) => b.pending);
  scrapedGauge(
    registry,
    'summa_outbox_parked_events',
    'Events in the outbox that no relay publishes until they are released: they failed too often for reasons of their own.',
    readBacklog,
    (b) => b.parked,
  );
  scrapedGauge(
    registry,
    'summa_outbox_oldest_event_age_seconds',
    'Age of the oldest unpublished event, parked ones left out (0 when there is none).',
    readBacklog,
    (b) => b.oldestAgeSeconds,
  );
  // Beside the oldest age, so that an alert compares the two without knowing the configuration.
  new Gauge({
    name: 'summa_outbox_dedup_window_seconds',
    help: 'The dedup window (DEDUP_WINDOW_SECONDS): an event that waits in the outbox longer than this is quarantined by the totals service, not applied.',
    registers: [registry],
  }).set(dedupWindowSeconds);
  return {
    published: new Counter({ name: 'summa_relay_events_published_total', help: 'Events published to Kafka and removed from the outbox.', registers: [registry] }),
    publishErrors: new Counter({ name: 'summa_relay_publish_errors_total', help: 'Relay batches that failed and will be retried.', registers: [registry] }),
    parked: new Counter({ name: 'summa_relay_events_parked_total', help: 'Events this relay parked after their last allowed failed attempt.', registers: [registry] }),
    publishSeconds: new Histogram({
      name: 'summa_relay_publish_duration_seconds',
      help: 'Time from sending a batch to Kafka until every record of it was acknowledged.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'summa_relay_batch_size',
      help: 'Events per relayed batch.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers: [registry],
    }),
    // Their ratio is the records per produce request, what the broker's cost per record depends on.
    produceRequests: new Counter({
      name: 'summa_relay_produce_requests_total',
      help: 'Produce requests Kafka answered without error (one per broker a send writes to).',
      registers: [registry],
    }),
    recordsProduced: new Counter({
      name: 'summa_relay_records_produced_total',
      help: 'Records handed to the Kafka producer to send, retried sends included.',
      registers: [registry],
    }),
  };
}
