import { Gauge, type Registry } from 'prom-client';
import { withoutSamples } from '../metrics.ts';
import type { PeriodPartitions, RetentionSnapshot } from './period-partitions.ts';

const GAUGES: { name: string; help: string; pick: (snapshot: RetentionSnapshot) => number }[] = [
  { name: 'summa_retention_rows', help: 'Rows in the partitions still kept (exact for closed periods, estimated for the open ones).', pick: (s) => s.rows },
  { name: 'summa_retention_bytes', help: 'Bytes on disk of the partitions still kept, indexes included.', pick: (s) => s.bytes },
  { name: 'summa_retention_oldest_row_age_seconds', help: 'Age of the oldest partition still kept, from when it began taking rows.', pick: (s) => s.oldestRowAgeSeconds },
  { name: 'summa_retention_partitions_ahead', help: 'Partitions made ahead, not yet written to.', pick: (s) => s.partitionsAhead },
  { name: 'summa_retention_partitions', help: 'Partitions kept, the one written to included.', pick: (s) => s.partitionsRetained },
  {
    name: 'summa_retention_partitions_overdue',
    help: 'Partitions more than a period past the window and still there: dropping is behind.',
    pick: (s) => s.partitionsOverdue,
  },
  { name: 'summa_retention_rows_dropped', help: 'Rows dropped with their partitions, ever (from the catalogue of partitions).', pick: (s) => s.rowsDropped },
  { name: 'summa_retention_current_generation', help: 'The generation (partition) written to now.', pick: (s) => s.currentGeneration },
];

/**
 * The retention gauges of one or more partitioned tables, labelled by table, as their keepers saw
 * them at their last step (no sample before the first).
 */
export function registerRetentionMetrics(registry: Registry, keepers: Record<string, PeriodPartitions>): void {
  for (const { name, help, pick } of GAUGES) {
    new Gauge({
      name,
      help,
      labelNames: ['table'],
      registers: [registry],
      collect() {
        withoutSamples(this);
        for (const [table, keeper] of Object.entries(keepers)) {
          const snapshot = keeper.snapshot();
          if (snapshot) this.set({ table }, pick(snapshot));
        }
      },
    });
  }
}
