import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { TotalsStore } from './totals-store.ts';

export interface TotalsMetrics {
  applied: Counter;
  duplicates: Counter;
  rejected: Counter;
  endToEndSeconds: Histogram;
}

export function createTotalsMetrics(registry: Registry, store: TotalsStore): TotalsMetrics {
  let snapshot: ReturnType<TotalsStore['readTotal']> | undefined;
  const readTotal = () => {
    snapshot ??= store.readTotal().finally(() => {
      snapshot = undefined;
    });
    return snapshot;
  };
  new Gauge({
    name: 'summa_total_value',
    help: 'The running total (as a float for graphs; GET /total has the exact value).',
    registers: [registry],
    async collect() {
      this.set(Number((await readTotal()).total));
    },
  });
  new Gauge({
    name: 'summa_total_events',
    help: 'Events applied to the running total.',
    registers: [registry],
    async collect() {
      this.set((await readTotal()).count);
    },
  });
  return {
    applied: new Counter({ name: 'summa_totals_events_applied_total', help: 'Events added to the total.', registers: [registry] }),
    duplicates: new Counter({
      name: 'summa_totals_duplicates_skipped_total',
      help: 'Events delivered again and skipped because they were already applied.',
      registers: [registry],
    }),
    rejected: new Counter({
      name: 'summa_totals_records_rejected_total',
      help: 'Records that were not valid events, kept in totals.rejected_records.',
      registers: [registry],
    }),
    endToEndSeconds: new Histogram({
      name: 'summa_end_to_end_latency_seconds',
      help: 'Time from the calculator accepting a sum to the sum being applied to the total.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
  };
}
