// What the totals database says about the events applied: how many, and how long each took from
// its acceptance by a calculator to its application (both timestamps from the database's clock).
import type pg from 'pg';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface LatencyPercentiles {
  p50: number;
  p99: number;
  max: number;
}

export function appliedEvents(sql: pg.Pool) {
  const appliedCount = async () => Number((await sql.query<{ count: string }>('SELECT count::text FROM totals.total WHERE id = 1')).rows[0]!.count);
  return {
    appliedCount,
    /** Waits until `count` events are applied; the seconds it took. */
    async waitApplied(count: number, timeoutMs = 600_000): Promise<number> {
      const since = performance.now();
      while ((await appliedCount()) < count) {
        if (performance.now() - since > timeoutMs) throw new Error(`fewer than ${count} events applied after ${timeoutMs} ms`);
        await sleep(50);
      }
      return (performance.now() - since) / 1000;
    },
    /** Percentiles of accepted → applied (ms) for events accepted in [from, to). */
    async endToEnd(from: Date, to: Date): Promise<LatencyPercentiles> {
      const { rows } = await sql.query<{ p50: number | null; p99: number | null; max: number | null }>(
        `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS max
         FROM (SELECT extract(epoch FROM applied_at - accepted_at) * 1000 AS ms FROM totals.applied_events
               WHERE accepted_at >= $1 AND accepted_at < $2) AS e`,
        [from, to],
      );
      return { p50: rows[0]!.p50 ?? NaN, p99: rows[0]!.p99 ?? NaN, max: rows[0]!.max ?? NaN };
    },
    async appliedBetween(from: Date, to: Date): Promise<number> {
      return Number(
        (await sql.query<{ n: string }>('SELECT count(*)::text AS n FROM totals.applied_events WHERE applied_at >= $1 AND applied_at < $2', [from, to])).rows[0]!.n,
      );
    },
  };
}
