// The chaos run's audit when the services keep their rows for short windows (seconds): requests and
// applied events are dropped with their partitions while the run goes on, so neither the rows left
// nor `summa verify` can tell by the end what was recorded and applied. Every row written into
// calculator.requests and totals.applied_events is therefore also kept in a log of the harness's own
// (a trigger in the writer's transaction: a write rolled back leaves nothing there either), and the
// invariant is checked on the logs: every recorded request applied exactly once (by event id, so an
// id recorded again after the window is two requests), nothing applied that was not recorded, and
// the total the exact sum of what was recorded.
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';

/** The services' windows; seconds, as their environment takes them. */
export interface ChaosWindows {
  idempotencySeconds: number;
  idempotencyPartitionSeconds: number;
  /**
   * Must be longer than the longest an event can take from its commit to the totals: an event
   * later than that is quarantined, not counted (by design). The relay's lease is part of that
   * delay (the events of a relay killed mid-publish wait it out), hence relayLeaseMs.
   */
  dedupSeconds: number;
  dedupPartitionSeconds: number;
  /** RELAY_LEASE_MS: well within dedupSeconds (its default, 30 s, is not). */
  relayLeaseMs: number;
}

/** The short windows a chaos run with `--windows` (and its test) uses. */
export const SHORT_WINDOWS: ChaosWindows = Object.freeze({
  idempotencySeconds: 6,
  idempotencyPartitionSeconds: 2,
  // A kill -9 of the broker, the database or a consumer holds events back for up to ~10-15 s on a
  // busy two-core machine, and two in a row (a consumer, then the broker) for longer: a run with 6 s
  // here quarantined 90 of 2,580 events, one with 20 s 1,010 of 8,314, held back up to 34 s.
  dedupSeconds: 45,
  dedupPartitionSeconds: 2,
  relayLeaseMs: 3_000,
});

export function windowEnv(windows: ChaosWindows): Record<string, string> {
  return {
    IDEMPOTENCY_WINDOW_SECONDS: String(windows.idempotencySeconds),
    IDEMPOTENCY_PARTITION_SECONDS: String(windows.idempotencyPartitionSeconds),
    DEDUP_WINDOW_SECONDS: String(windows.dedupSeconds),
    DEDUP_PARTITION_SECONDS: String(windows.dedupPartitionSeconds),
    RELAY_LEASE_MS: String(windows.relayLeaseMs),
  };
}

/**
 * The logs and their triggers. A row trigger on a partitioned table is cloned onto every partition,
 * those the services attach later included. Installed before any client sends.
 */
export async function installRowLogs(sql: pg.Pool): Promise<void> {
  await sql.query(`
    CREATE SCHEMA chaos;
    CREATE TABLE chaos.requests_log (seq bigserial, request_id text NOT NULL, sum bigint NOT NULL, event_id uuid NOT NULL, generation integer NOT NULL);
    CREATE TABLE chaos.applied_log (event_id uuid NOT NULL, amount numeric NOT NULL, generation integer NOT NULL);
    CREATE FUNCTION chaos.log_request() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO chaos.requests_log (request_id, sum, event_id, generation) VALUES (NEW.request_id, NEW.sum, NEW.event_id, NEW.generation);
      RETURN NULL;
    END $$;
    CREATE FUNCTION chaos.log_applied() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO chaos.applied_log VALUES (NEW.event_id, NEW.amount, NEW.generation);
      RETURN NULL;
    END $$;
    CREATE TRIGGER chaos_log AFTER INSERT ON calculator.requests FOR EACH ROW EXECUTE FUNCTION chaos.log_request();
    CREATE TRIGGER chaos_log AFTER INSERT ON totals.applied_events FOR EACH ROW EXECUTE FUNCTION chaos.log_applied();
  `);
}

export interface WindowAudit {
  /** Every sum recorded under each request id, in the order recorded (more than one: recorded again after the window). */
  recorded: Map<string, bigint[]>;
  requests: number;
  /** Recorded requests not applied (quarantined ones included), and those still in the outbox. */
  lost: number;
  /** Of those, quarantined as older than the dedup window. */
  quarantined: number;
  pendingInOutbox: number;
  /** Events applied more than once. */
  double: number;
  /** Applied events no request was recorded for. */
  orphans: number;
  /** Request ids recorded more than once (each time as a new request, after the window). */
  recordedAgain: number;
  total: string;
  count: string;
  expectedTotal: string;
  /** Generations dropped by the services during the run. */
  droppedGenerations: { requests: number; appliedEvents: number };
  problems: string[];
}

const COUNTS_SQL = `
  SELECT (SELECT count(*) FROM calculator.outbox)::int AS pending,
         (SELECT count(*) FROM chaos.requests_log r
          WHERE NOT EXISTS (SELECT 1 FROM chaos.applied_log a WHERE a.event_id = r.event_id))::int AS unapplied,
         (SELECT count(*) FROM chaos.requests_log r
          WHERE NOT EXISTS (SELECT 1 FROM chaos.applied_log a WHERE a.event_id = r.event_id)
            AND EXISTS (SELECT 1 FROM totals.rejected_records q WHERE q.event_id = r.event_id))::int AS quarantined`;

/** Waits until the outbox is empty and every recorded request is applied or quarantined, or the time is up. */
export async function waitUntilQuiet(sql: pg.Pool, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await sql.query<{ pending: number; unapplied: number; quarantined: number }>(COUNTS_SQL).catch(() => undefined);
    const row = counts?.rows[0];
    if (row && row.pending === 0 && row.unapplied === row.quarantined) return true;
    if (Date.now() > deadline) return false;
    await sleep(500);
  }
}

export async function auditWindows(sql: pg.Pool): Promise<WindowAudit> {
  const problems: string[] = [];
  const { rows: recordedRows } = await sql.query<{ request_id: string; sum: string }>('SELECT request_id, sum::text FROM chaos.requests_log ORDER BY seq');
  const recorded = new Map<string, bigint[]>();
  for (const row of recordedRows) recorded.set(row.request_id, [...(recorded.get(row.request_id) ?? []), BigInt(row.sum)]);
  const counts = (await sql.query<{ pending: number; unapplied: number; quarantined: number }>(COUNTS_SQL)).rows[0]!;
  const { rows: twice } = await sql.query<{ event_id: string; times: number }>(
    'SELECT event_id::text, count(*)::int AS times FROM chaos.applied_log GROUP BY event_id HAVING count(*) > 1 LIMIT 1000',
  );
  const { rows: orphans } = await sql.query<{ event_id: string }>(
    'SELECT event_id::text FROM chaos.applied_log a WHERE NOT EXISTS (SELECT 1 FROM chaos.requests_log r WHERE r.event_id = a.event_id) LIMIT 1000',
  );
  const { rows: sums } = await sql.query<{ expected: string; requests: string; total: string; count: string }>(
    `SELECT (SELECT coalesce(sum(sum), 0)::text FROM chaos.requests_log) AS expected,
            (SELECT count(*)::text FROM chaos.requests_log) AS requests,
            t.total::text AS total, t.count::text AS count
     FROM totals.total t WHERE t.id = 1`,
  );
  const { rows: dropped } = await sql.query<{ requests: number; applied: number }>(
    `SELECT (SELECT count(*) FROM calculator.partitions WHERE dropped_at IS NOT NULL)::int AS requests,
            (SELECT count(*) FROM totals.partitions WHERE dropped_at IS NOT NULL)::int AS applied`,
  );
  const sumsRow = sums[0]!;
  if (BigInt(sumsRow.total) !== BigInt(sumsRow.expected) || sumsRow.count !== sumsRow.requests) {
    problems.push(`total ${sumsRow.total} over ${sumsRow.count} events, but the recorded requests add up to ${sumsRow.expected} over ${sumsRow.requests}`);
  }
  const lost = counts.unapplied + counts.pending;
  if (lost > 0) problems.push(`${lost} recorded request(s) not applied (${counts.quarantined} quarantined as older than the dedup window, ${counts.pending} still in the outbox)`);
  if (twice.length > 0) problems.push(`${twice.length} event(s) applied more than once, e.g. ${twice.slice(0, 3).map((r) => r.event_id).join(', ')}`);
  if (orphans.length > 0) problems.push(`${orphans.length} applied event(s) without a recorded request, e.g. ${orphans.slice(0, 3).map((r) => r.event_id).join(', ')}`);
  return {
    recorded,
    requests: recordedRows.length,
    lost,
    quarantined: counts.quarantined,
    pendingInOutbox: counts.pending,
    double: twice.length,
    orphans: orphans.length,
    recordedAgain: [...recorded.values()].filter((list) => list.length > 1).length,
    total: sumsRow.total,
    count: sumsRow.count,
    expectedTotal: sumsRow.expected,
    droppedGenerations: { requests: dropped[0]!.requests, appliedEvents: dropped[0]!.applied },
    problems,
  };
}

export function formatWindowAudit(audit: WindowAudit): string {
  return [
    `requests recorded:     ${audit.requests} (${audit.recordedAgain} id(s) recorded again after the window)`,
    `not applied:           ${audit.lost} (${audit.quarantined} quarantined, ${audit.pendingInOutbox} in the outbox)`,
    `applied twice:         ${audit.double}`,
    `applied, not recorded: ${audit.orphans}`,
    `total:                 ${audit.total} over ${audit.count} events (recorded: ${audit.expectedTotal} over ${audit.requests})`,
    `partitions dropped:    ${audit.droppedGenerations.requests} of calculator.requests, ${audit.droppedGenerations.appliedEvents} of totals.applied_events`,
  ].join('\n');
}
