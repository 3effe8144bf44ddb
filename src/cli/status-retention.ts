// `summa status` on bounded state: how each service keeps its partitioned table (calculator.requests,
// totals.applied_events), read from the summa_retention_* gauges of its /metrics. Those are what the
// table's keeper saw at its last step, with the service's own window, so status needs no config.
import { getText } from './targets.ts';
import { formatBytes, formatSeconds } from './status-report.ts';

/** What one service's /metrics say of one partitioned table. */
export interface RetentionReading {
  table: string;
  rows: number;
  bytes: number;
  oldestRowAgeSeconds: number;
  partitionsAhead: number;
  partitions: number;
  partitionsOverdue: number;
  rowsDropped: number;
  currentGeneration: number;
}

/** The retention of one table as status reports it: the reading (absent when none came) and what to say of it. */
export interface RetentionStatus {
  table: string;
  /** The service whose /metrics were read. */
  service: string;
  reading?: RetentionReading;
  detail: string;
  warnings: string[];
}

const FIELDS: Record<string, keyof Omit<RetentionReading, 'table'>> = {
  summa_retention_rows: 'rows',
  summa_retention_bytes: 'bytes',
  summa_retention_oldest_row_age_seconds: 'oldestRowAgeSeconds',
  summa_retention_partitions_ahead: 'partitionsAhead',
  summa_retention_partitions: 'partitions',
  summa_retention_partitions_overdue: 'partitionsOverdue',
  summa_retention_rows_dropped: 'rowsDropped',
  summa_retention_current_generation: 'currentGeneration',
};

const SAMPLE_LINE = /^(summa_retention_[a-z_]+)\{([^}]*)\}\s+(\S+)/;
const TABLE_LABEL = /(?:^|,)table="([^"\\]*)"/;

/** The retention gauges of a Prometheus text exposition, per table; a table missing a gauge is left out. */
export function parseRetention(exposition: string): RetentionReading[] {
  const byTable = new Map<string, Partial<RetentionReading>>();
  for (const line of exposition.split('\n')) {
    const match = SAMPLE_LINE.exec(line);
    const field = match && FIELDS[match[1]!];
    const table = match && TABLE_LABEL.exec(match[2]!)?.[1];
    if (!field || !table) continue;
    const reading = byTable.get(table) ?? { table };
    reading[field] = Number(match[3]);
    byTable.set(table, reading);
  }
  const complete = (reading: Partial<RetentionReading>): reading is RetentionReading => Object.values(FIELDS).every((field) => reading[field] !== undefined);
  return [...byTable.values()].filter(complete);
}

function formatAge(seconds: number): string {
  if (seconds < 120) return formatSeconds(seconds);
  if (seconds < 7_200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${(seconds / 3_600).toFixed(1)} h`;
  return `${(seconds / 86_400).toFixed(1)} d`;
}

/**
 * One table's line, and its warnings: a partition overdue (dropping is behind: the table grows past
 * its window) or none made ahead (the next switch of period has nowhere to go, and the writes stay
 * in the current partition, which then outlives the window).
 */
export function gradeRetention(service: string, table: string, reading: RetentionReading | undefined, problem?: string): RetentionStatus {
  if (!reading) return { table, service, detail: `no reading${problem ? `: ${problem}` : ' yet (the keeper has not run)'}`, warnings: [] };
  const warnings: string[] = [];
  if (reading.partitionsOverdue > 0) {
    warnings.push(`${table}: ${reading.partitionsOverdue} partition(s) past the retention window are still there: dropping is behind (see the ${service} log)`);
  }
  if (reading.partitionsAhead === 0) {
    warnings.push(`${table}: no partition made ahead: the writes cannot move on when the period ends (see the ${service} log)`);
  }
  const detail =
    `${reading.partitions} partition(s) kept, ${reading.partitionsAhead} ahead, ${reading.partitionsOverdue} overdue; ` +
    `oldest row ${formatAge(reading.oldestRowAgeSeconds)}; ${reading.rows} rows, ${formatBytes(reading.bytes)}; ${reading.rowsDropped} rows dropped`;
  return { table, service, reading, detail, warnings };
}

/** The retention readings of one service's /metrics (its readiness URL's origin). */
export async function probeRetention(readinessUrl: string, options: { ca?: Buffer; timeoutMs: number }): Promise<RetentionReading[] | { error: string }> {
  const url = `${new URL(readinessUrl).origin}/metrics`;
  try {
    const { status, text } = await getText(url, 'metrics', options);
    if (status !== 200) return { error: `GET ${url} answered HTTP ${status}` };
    return parseRetention(text);
  } catch (error) {
    return { error: (error as Error).message };
  }
}
