import type pg from 'pg';

/**
 * What of a table kept by period (period-partitions.ts) `summa verify` can audit row by row, and
 * what it can only check through the checkpoints of the periods already dropped, read from the
 * schema's catalogue of generations (`<schema>.partitions`).
 *
 * A generation counts as dropped from the moment it is retired: its rows may still be there while
 * it is detached, but they are checked through its checkpoint, not row by row, so that nothing is
 * counted twice and the cut between the two does not move while the audit runs.
 */
export interface AuditWindow {
  /**
   * When the oldest generation still kept started taking rows (ISO 8601, the database's clock);
   * null while no generation was ever dropped: every row is there.
   */
  since: string | null;
  /** The generations retired or dropped: their rows are left out of the row-by-row audit. */
  droppedGenerations: number[];
  /** The checkpoints of those generations, added up. */
  dropped: {
    periods: number;
    rows: number;
    /** The sum of their amounts (integer text). */
    amount: string;
  };
  /** Dropped generations that have no checkpoint: their rows are gone unaccounted for. */
  withoutCheckpoint: number[];
}

/** Reads the window of `<schema>.<table>` in the snapshot of `client`. */
export async function readAuditWindow(client: pg.ClientBase, schema: 'calculator' | 'totals', table: string): Promise<AuditWindow> {
  const { rows } = await client.query<{
    since: string | null;
    dropped: number[];
    periods: string;
    rows: string;
    amount: string;
    without_checkpoint: number[];
  }>(
    `WITH g AS (SELECT *, retired_at IS NOT NULL OR dropped_at IS NOT NULL AS gone FROM ${schema}.partitions WHERE table_name = $1)
     SELECT CASE WHEN EXISTS (SELECT 1 FROM g WHERE gone)
                 THEN (SELECT to_char(min(started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM g WHERE NOT gone AND started_at IS NOT NULL)
            END AS since,
            coalesce((SELECT array_agg(generation ORDER BY generation) FROM g WHERE gone), '{}') AS dropped,
            (SELECT count(*) FROM g WHERE gone)::text AS periods,
            (SELECT coalesce(sum(row_count), 0) FROM g WHERE gone)::text AS rows,
            (SELECT trim_scale(coalesce(sum(amount), 0)) FROM g WHERE gone)::text AS amount,
            coalesce((SELECT array_agg(generation ORDER BY generation) FROM g WHERE gone AND closed_at IS NULL), '{}') AS without_checkpoint`,
    [table],
  );
  const row = rows[0]!;
  return {
    since: row.since,
    droppedGenerations: row.dropped,
    dropped: { periods: Number(row.periods), rows: Number(row.rows), amount: row.amount },
    withoutCheckpoint: row.without_checkpoint,
  };
}
