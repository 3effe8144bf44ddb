// History for `npm run bench -- --history N`: N requests and their applied events, written with
// generate_series straight into the partitions (not through the API), spread over the generations a
// full window keeps, as if the pipeline had run for days. The total and counts in
// totals.partition_totals grow by exactly what is loaded, and each generation is switched and
// checkpointed by the services' own keeper (PeriodPartitions), so `summa verify` passes afterwards.
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { pino } from 'pino';
import { PeriodPartitions } from '../../src/platform/db/period-partitions.ts';

/** What a full default window holds: 7 days of 1-day partitions. */
export const HISTORY_GENERATIONS = 7;
/** Rows per INSERT statement: large enough to be cheap per row, small enough to show progress. */
const CHUNK = 500_000;

export interface HistoryLoadOptions {
  /** A pool on the benchmark's database (both schemas); needs one connection, two is better. */
  sql: pg.Pool;
  /** Requests (and as many applied events) to load. */
  events: number;
  /** Generations to spread them over, the last one left current (default HISTORY_GENERATIONS). */
  generations?: number;
  log: (message: string) => void;
}

export interface HistoryLoad {
  events: number;
  /** Per table, the generation each slice of the history went into, oldest first. */
  generations: { requests: number[]; applied_events: number[] };
  /** Writing the rows, switching and checkpointing the generations. */
  insert_seconds: number;
  vacuum_analyze_seconds: number;
  /** Everything, the final CHECKPOINT included. */
  load_seconds: number;
  /** Of the two tables, indexes included, once loaded. */
  requests_bytes: number;
  applied_events_bytes: number;
}

/** A count such as 20000000, 20_000_000 or 20e6, as a whole number of at least `min`. */
export function parseEventCount(raw: string, min = HISTORY_GENERATIONS): number {
  const value = Number(raw.trim().replaceAll('_', ''));
  if (raw.trim() === '' || !Number.isSafeInteger(value) || value < min) {
    throw new Error(`--history must be a whole number of events of at least ${min} (e.g. 20000000, 20_000_000 or 20e6), got ${raw}`);
  }
  return value;
}

// History request i: request id 'history-<i>', num1 i, num2 1, sum i + 1; its event id derives from
// the request id (md5 spreads them over the uuid space as random ids are), so both tables are
// generated independently and match. Offsets are negative: records older than the topic's own.
const REQUESTS_SQL = (partition: string, generation: number) =>
  `INSERT INTO ${partition} (request_id, num1, num2, sum, event_id, accepted_at, generation)
   SELECT 'history-' || i, i, 1, i + 1, md5('history-' || i)::uuid, now(), ${generation} FROM generate_series($1::int8, $2::int8) AS i`;
// The applied events and the subtotals they add to, in one statement: the total never differs
// from the events, even if the load stops half way.
const APPLIED_SQL = (partition: string, generation: number) =>
  `WITH loaded AS (
     INSERT INTO ${partition} (event_id, request_id, amount, accepted_at, applied_at, kafka_partition, kafka_offset, generation)
     SELECT md5('history-' || i)::uuid, 'history-' || i, i + 1, now(), now(), ($3::int[])[1 + i % cardinality($3::int[])], -i, ${generation}
     FROM generate_series($1::int8, $2::int8) AS i
     RETURNING kafka_partition, amount
   )
   INSERT INTO totals.partition_totals AS p (partition, total, count, updated_at)
   SELECT kafka_partition, sum(amount), count(*), now() FROM loaded GROUP BY kafka_partition
   ON CONFLICT (partition) DO UPDATE SET total = p.total + excluded.total, count = p.count + excluded.count, updated_at = excluded.updated_at`;

export async function loadHistory(options: HistoryLoadOptions): Promise<HistoryLoad> {
  const { sql, events, log } = options;
  const generationCount = options.generations ?? HISTORY_GENERATIONS;
  if (!Number.isInteger(generationCount) || generationCount < 1 || events < generationCount) {
    throw new Error(`cannot spread ${events} events over ${generationCount} generations`);
  }
  const started = performance.now();
  // The Kafka partitions the pipeline has used so far; the history's events are spread over them.
  const { rows: partitionRows } = await sql.query<{ partition: number }>('SELECT partition FROM totals.partition_totals WHERE partition >= 0 ORDER BY 1');
  const kafkaPartitions = partitionRows.length > 0 ? partitionRows.map((row) => row.partition) : [0];

  // Fewer checkpoints during the load; the setting in force before is put back for the measurement.
  const { rows: walRows } = await sql.query<{ setting: string }>(`SELECT current_setting('max_wal_size') AS setting`);
  await sql.query(`ALTER SYSTEM SET max_wal_size = '8GB'`);
  await sql.query('SELECT pg_reload_conf()');

  // Keepers like the services' (default 7-day window, so nothing is dropped), whose period is over
  // at once: each step() moves the writes to the next generation and checkpoints the previous one.
  const silent = pino({ level: 'silent' });
  const keepers = {
    requests: new PeriodPartitions(sql, { schema: 'calculator', table: 'requests', amountColumn: 'sum', windowSeconds: 604_800, periodSeconds: 0 }, silent),
    applied_events: new PeriodPartitions(sql, { schema: 'totals', table: 'applied_events', amountColumn: 'amount', windowSeconds: 604_800, periodSeconds: 0 }, silent),
  };
  const current = async (schema: string, table: string) =>
    (await sql.query<{ generation: number }>(`SELECT generation FROM ${schema}.partitions WHERE table_name = $1 AND started_at IS NOT NULL AND ended_at IS NULL`, [table]))
      .rows[0]!.generation;
  /** Steps until the writes moved on: the services' keeper may hold the advisory lock for a moment. */
  const switchGeneration = async (keeper: PeriodPartitions, schema: string, table: string) => {
    const from = await current(schema, table);
    const deadline = performance.now() + 60_000;
    for (;;) {
      await keeper.step();
      if ((await current(schema, table)) > from) return;
      if (performance.now() > deadline) throw new Error(`${schema}.${table} did not move past generation ${from} within 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  const loaded: HistoryLoad['generations'] = { requests: [], applied_events: [] };
  try {
    let next = 1;
    for (let slice = 0; slice < generationCount; slice += 1) {
      const last = Math.round((events * (slice + 1)) / generationCount);
      const requestsGeneration = await current('calculator', 'requests');
      const appliedGeneration = await current('totals', 'applied_events');
      for (let first = next; first <= last; first += CHUNK) {
        const to = Math.min(last, first + CHUNK - 1);
        await sql.query(REQUESTS_SQL(`calculator.requests_g${requestsGeneration}`, requestsGeneration), [first, to]);
        await sql.query(APPLIED_SQL(`totals.applied_events_g${appliedGeneration}`, appliedGeneration), [first, to, kafkaPartitions]);
      }
      loaded.requests.push(requestsGeneration);
      loaded.applied_events.push(appliedGeneration);
      log(`history: ${last.toLocaleString('en-US')} of ${events.toLocaleString('en-US')} events loaded (generation ${requestsGeneration} / ${appliedGeneration})`);
      next = last + 1;
      // The last slice stays in the generation written to: the window's newest partition is not empty.
      if (slice < generationCount - 1) {
        await switchGeneration(keepers.requests, 'calculator', 'requests');
        await switchGeneration(keepers.applied_events, 'totals', 'applied_events');
      }
    }
  } finally {
    await sql.query(`ALTER SYSTEM SET max_wal_size = '${walRows[0]!.setting}'`);
    await sql.query('SELECT pg_reload_conf()');
  }
  const inserted = performance.now();
  log('history: VACUUM ANALYZE');
  // What autovacuum would have done long before anyone measured a window this full.
  await sql.query('VACUUM ANALYZE calculator.requests, totals.applied_events, totals.partition_totals');
  const vacuumed = performance.now();
  // The load's dirty pages are written now, not during the measurement that follows.
  await sql.query('CHECKPOINT');
  const size = async (table: string) =>
    Number(
      (
        await sql.query<{ bytes: string }>(
          `SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::text AS bytes FROM pg_inherits i WHERE i.inhparent = $1::regclass`,
          [table],
        )
      ).rows[0]!.bytes,
    );
  const round = (value: number) => Number(value.toFixed(1));
  return {
    events,
    generations: loaded,
    insert_seconds: round((inserted - started) / 1000),
    vacuum_analyze_seconds: round((vacuumed - inserted) / 1000),
    load_seconds: round((performance.now() - started) / 1000),
    requests_bytes: await size('calculator.requests'),
    applied_events_bytes: await size('totals.applied_events'),
  };
}
