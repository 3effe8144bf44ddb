// Who flushes PostgreSQL's WAL: fsyncs counted per service (the pool's application_name) and per
// background process (walwriter, checkpointer), from PostgreSQL 18's per-backend I/O statistics.
// A commit that finds its WAL already flushed by another backend costs no fsync of its own, so the
// counts say which service pays for the flushes, not which one needed them.
import type pg from 'pg';

export type WalFsyncsBySource = Record<string, number>;

/**
 * Per-source WAL fsync counters, or undefined before PostgreSQL 18 (no pg_stat_get_backend_io).
 * Counters of a backend that has exited are lost, so take both snapshots while the services run.
 */
export async function walFsyncsBySourceReader(sql: pg.Pool): Promise<(() => Promise<WalFsyncsBySource>) | undefined> {
  const { rows } = await sql.query<{ present: boolean }>(`SELECT to_regproc('pg_stat_get_backend_io') IS NOT NULL AS present`);
  if (!rows[0]?.present) return undefined;
  return async () => {
    const { rows: counts } = await sql.query<{ source: string; fsyncs: string }>(`
      SELECT coalesce(nullif(a.application_name, ''), a.backend_type) AS source, sum(io.fsyncs)::text AS fsyncs
      FROM pg_stat_activity a, LATERAL pg_stat_get_backend_io(a.pid) io
      WHERE a.backend_type = 'client backend' AND io.object = 'wal' AND io.fsyncs IS NOT NULL
      GROUP BY 1`);
    // Background processes have no per-backend row: their counts are pg_stat_io's by type.
    const { rows: background } = await sql.query<{ source: string; fsyncs: string }>(`
      SELECT backend_type AS source, sum(fsyncs)::text AS fsyncs FROM pg_stat_io
      WHERE object = 'wal' AND backend_type <> 'client backend' AND fsyncs IS NOT NULL GROUP BY 1`);
    const result: WalFsyncsBySource = {};
    for (const row of [...counts, ...background]) result[row.source] = (result[row.source] ?? 0) + Number(row.fsyncs);
    return result;
  };
}

/** fsyncs per request between two snapshots, per source with any. */
export function fsyncsPerRequestBySource(from: WalFsyncsBySource, to: WalFsyncsBySource, requests: number): Record<string, number> {
  const result: Record<string, number> = {};
  for (const source of Object.keys(to).sort()) {
    const count = to[source]! - (from[source] ?? 0);
    if (count > 0) result[source] = Number((count / requests).toFixed(4));
  }
  return result;
}
