import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { OUTBOX_TABLE, REQUESTS_TABLE } from '../calculator/schema.ts';
import { TOO_OLD_REASON } from '../totals/totals-store.ts';
import { readAuditWindow, type AuditWindow } from './audit-window.ts';
import { forEachRow, RowStream } from './row-stream.ts';

/**
 * Audits "no sum lost, none counted twice" from the databases alone: the calculator's accepted
 * requests and outbox against the totals' applied events and running total.
 *
 * The two schemas may live in different databases, so the comparison is a merge: both sides are
 * streamed in event id order through server-side cursors and walked side by side, a batch at a
 * time, and everything else is set-based SQL (aggregates, an anti-join, a GROUP BY ... HAVING) that
 * returns only counts and the rows that are problems. Memory stays bounded whatever the number of
 * requests. Each side is read on a connection of its own, so the two servers (or two backends of
 * one) sort and scan at the same time.
 *
 * Each side is read in one REPEATABLE READ snapshot, the totals' taken first: every event applied
 * in the totals snapshot was accepted before it, so its request is in the (later) calculator
 * snapshot, and an applied event without a request is a real fault. When both schemas are in one
 * database (the same pool), the calculator side imports the totals' snapshot, so one snapshot
 * serves both. The opposite direction is not exact on a live system: a request may be on its way
 * through Kafka, or applied between the two snapshots. Such a request is "in flight" while it is
 * younger than the grace period; after that it is a candidate for "lost", and read again, outside
 * the snapshot, before it is called lost.
 *
 * Every age is measured by the database's clock (now() of the snapshot), never this host's.
 *
 * Both tables are kept for a window only, in periods (period-partitions.ts). The audit goes row by
 * row through the periods still kept, and checks the dropped ones through their checkpoints: the
 * recorded total must equal the checkpoints' sums plus the applied events kept. Where the two
 * windows do not line up, a request whose event was applied in a dropped period (or an event whose
 * request was dropped) has nothing to be matched with; it is told apart from a lost request (or an
 * event without a request) by its accepted_at, earlier than the other side's window.
 */

export interface AuditOptions {
  /** A request neither pending in the outbox nor applied counts as in flight for this long (default 30s). */
  graceSeconds?: number;
  /** At most this many examples of each problem are listed (default 20). */
  sampleSize?: number;
  /**
   * The oldest outbox event may be this old, by the database's clock, before the relay counts as
   * stuck (default 300 s): its events are not reaching the total.
   */
  maxOutboxAgeSeconds?: number;
  /** Rows fetched per round trip from each cursor (default 10,000); memory holds a few such batches. */
  batchSize?: number;
  /**
   * How far past the start of the other side's window accepted_at may be and still count as beyond
   * it (default 60 s): the two windows are cut by different keepers, on the clocks of two databases,
   * and an event is applied some time after its request was accepted.
   */
  edgeSeconds?: number;
  /**
   * The calculator's idempotency window (default 7 days): two events applied under one request id
   * are a double count only when accepted within it of each other; after it the id is free again.
   */
  idempotencyWindowSeconds?: number;
  /**
   * A test seam, not behaviour to rely on: called with each batch of lost candidates after the
   * snapshot read and before their second read, so a test can settle one in between.
   */
  beforeReread?: (candidates: readonly LostCandidate[]) => Promise<void> | void;
}

/** A request found neither in the outbox nor applied, older than the grace period, in the snapshot. */
export interface LostCandidate {
  eventId: string;
  requestId: string;
  sum: string;
}

export interface AppliedMismatch {
  eventId: string;
  requestId: string;
  reason: string;
}

export interface InvariantReport {
  /** True when no problem was found (requests still in flight are not a problem). */
  ok: boolean;
  /** One line per problem kind found, empty when ok. */
  failures: string[];
  counts: {
    /** Rows in calculator.requests of the periods kept: every acknowledged request has one until its period is dropped. */
    requests: number;
    /** Rows in totals.applied_events of the periods kept. */
    applied: number;
    /**
     * Requests whose event was applied once, as accepted: under their request id, with their sum.
     * Every request kept is counted in exactly one of appliedOnce, pendingInOutbox, inTransit,
     * quarantined, beyondAppliedWindow, problems.lost and problems.mismatched. (Other events applied under the same request id are
     * counted in problems.appliedTwice.)
     */
    appliedOnce: number;
    /** Requests whose event is still in the outbox, not yet applied. */
    pendingInOutbox: number;
    /**
     * Requests published (no longer in the outbox) but not yet applied in the snapshot: accepted
     * within the grace period, or found in the outbox or applied when read again.
     */
    inTransit: number;
    /** Of inTransit, the requests older than the grace period that the second read found applied (or pending). */
    clearedOnReread: number;
    /** Rows in totals.rejected_records (records that were not valid events, and events quarantined). */
    rejectedRecords: number;
    /** Requests whose event was quarantined as older than the dedup window (not applied, not lost). */
    quarantined: number;
    /**
     * Requests not applied among the applied events kept, accepted before their window began (plus
     * edgeSeconds): applied, if at all, in a period already dropped, which the total check covers.
     */
    beyondAppliedWindow: number;
    /** Applied events (not among `applied`'s matches) whose request was accepted before the requests' window. */
    beyondRequestWindow: number;
  };
  total: {
    recorded: string;
    recordedCount: number;
    /** Of the applied events kept (the periods not dropped). */
    ofAppliedEvents: string;
    appliedCount: number;
    /** Of the checkpoints of the dropped periods of applied events. */
    ofCheckpoints: string;
    checkpointCount: number;
  };
  /** What was audited row by row, and what only through the checkpoints of dropped periods. */
  window: {
    requests: AuditedWindow;
    applied: AuditedWindow;
    edgeSeconds: number;
    idempotencyWindowSeconds: number;
  };
  /** The outbox backlog, aged by the database's clock. */
  outbox: {
    /** Rows in calculator.outbox. */
    pending: number;
    /** Age of the oldest row in seconds; null when the outbox is empty. */
    oldestAgeSeconds: number | null;
    /** The limit it was judged by (--max-outbox-age). */
    maxAgeSeconds: number;
  };
  /** Samples (up to sampleSize each) of the problems counted in `problems`. */
  samples: {
    lost: string[];
    appliedTwice: string[];
    withoutRequest: string[];
    mismatched: AppliedMismatch[];
    outboxWithoutRequest: string[];
    quarantined: string[];
    withoutCheckpoint: string[];
  };
  problems: {
    /** Requests older than the grace period whose event is neither in the outbox nor applied, read twice. */
    lost: number;
    /** Request ids with more than one applied event accepted within one idempotency window of each other. */
    appliedTwice: number;
    /** Applied events whose event id no accepted request has. */
    withoutRequest: number;
    /** Applied events whose request id or amount differ from the request that produced the event. */
    mismatched: number;
    /** Outbox rows whose event id no accepted request has. */
    outboxWithoutRequest: number;
    /** totals.total disagrees with the checkpoints of the dropped periods plus the applied events kept. */
    totalMismatch: boolean;
    /** Dropped periods (of either table) without a checkpoint: their rows went unaccounted for. */
    withoutCheckpoint: number;
    /** The oldest outbox event is older than maxOutboxAgeSeconds: the relay is not delivering. */
    stuckOutbox: boolean;
    /**
     * Events quarantined as older than the dedup window and not replayed: applied in a dropped period
     * or never; `summa dlq` decides. Not counted as lost, not a broken invariant.
     */
    quarantined: number;
  };
  /** How long this audit took, in seconds. */
  auditSeconds: number;
}

export interface AuditedWindow {
  /** The start of the oldest period kept (ISO 8601); null when nothing was ever dropped. */
  since: string | null;
  /** Rows audited one by one. */
  audited: number;
  /** The dropped periods, through their checkpoints. */
  dropped: AuditWindow['dropped'];
}

export interface AuditDatabases {
  /**
   * Has the calculator schema (requests, outbox). A pool: the audit holds a connection of each pool
   * for its snapshot and reads candidates again on another, so each needs room for two, and a pool
   * serving both sides for three.
   */
  calculator: pg.Pool;
  /** Has the totals schema (total, applied_events, rejected_records); the same pool when it is the same database. */
  totals: pg.Pool;
}

// ---- the statements ---------------------------------------------------------------------------

/** The first statement on the totals side: it takes the totals snapshot. */
const RECORDED_TOTAL_SQL = 'SELECT total::text, count::text FROM totals.total WHERE id = 1';

/** Size and oldest age of the outbox, by the database's clock (created_at is the database's now() of its write). */
const OUTBOX_BACKLOG_SQL = `SELECT count(*)::text AS pending, extract(epoch FROM now() - min(created_at))::float8 AS oldest FROM ${OUTBOX_TABLE}`;

// In the statements below, $1 of the totals side is the list of dropped generations of applied
// events: their rows, while still there, are checked through their checkpoints, not one by one.

/** The applied events kept, added up. */
const TOTALS_AGGREGATES_SQL = `SELECT coalesce(sum(amount), 0)::text AS total, count(*)::text AS count,
  (SELECT count(*) FROM totals.rejected_records)::text AS rejected
FROM totals.applied_events WHERE NOT (generation = ANY($1::int[]))`;

/**
 * Request ids with more than one applied event: the candidates for "applied twice". Keyed by the
 * request id the event carries: two events applied under one request id is the double count an
 * idempotency key exists to prevent, whichever requests they came from. Answered from the request
 * id index alone where the visibility map allows.
 */
const APPLIED_MORE_THAN_ONCE_SQL = `SELECT request_id FROM totals.applied_events WHERE NOT (generation = ANY($1::int[]))
GROUP BY request_id HAVING count(*) > 1 ORDER BY request_id`;

/**
 * Of the candidates $2, those with two events accepted within one idempotency window ($3 seconds)
 * of each other. An id used again after the window is a new request (documented behaviour), not a
 * double count. Asked of a group of candidates at a time, through the request id index, rather than
 * in the statement above, where the planner would scan every applied event a second time.
 */
const APPLIED_TWICE_SQL = `SELECT request_id, count(*)::text FROM (
  SELECT request_id, accepted_at - lag(accepted_at) OVER (PARTITION BY request_id ORDER BY accepted_at) AS gap
  FROM totals.applied_events WHERE request_id = ANY($2::text[]) AND NOT (generation = ANY($1::int[]))
) s GROUP BY request_id HAVING bool_or(gap < make_interval(secs => $3::float8)) ORDER BY request_id`;

/** A few events of each of the request ids listed, for the examples. */
const APPLIED_TWICE_EVENTS_SQL = `SELECT request_id, (array_agg(event_id::text ORDER BY event_id))[1:5] AS events
FROM totals.applied_events WHERE request_id = ANY($2::text[]) AND NOT (generation = ANY($1::int[])) GROUP BY request_id`;

/** Outbox events no request has: an anti-join within the calculator snapshot. */
const OUTBOX_WITHOUT_REQUEST_SQL = `SELECT o.event_id::text FROM ${OUTBOX_TABLE} o
WHERE NOT EXISTS (SELECT 1 FROM ${REQUESTS_TABLE} r WHERE r.event_id = o.event_id) ORDER BY o.event_id`;

/**
 * Every request kept (not of the dropped generations $2) in event id order, with whether its event
 * waits in the outbox, whether it is within the grace period ($1 seconds, by the database's clock),
 * and whether it was accepted before the applied events' window began ($3, plus $4 seconds).
 */
const REQUESTS_SQL = `SELECT r.event_id::text, r.request_id, r.sum::text,
  r.accepted_at > now() - make_interval(secs => $1::float8) AS recent, o.event_id IS NOT NULL AS pending,
  coalesce(r.accepted_at < $3::timestamptz + make_interval(secs => $4::float8), false) AS beyond
FROM ${REQUESTS_TABLE} r LEFT JOIN (SELECT DISTINCT event_id FROM ${OUTBOX_TABLE}) o ON o.event_id = r.event_id
WHERE NOT (r.generation = ANY($2::int[]))
ORDER BY r.event_id`;

/**
 * Every applied event kept, and every event quarantined as older than the dedup window ($4) that
 * was neither replayed nor is among the applied events, in event id order: the same order as
 * REQUESTS_SQL (a uuid sorts as its lowercase text does). The amount without trailing zeros, so that
 * it compares as text with a sum; whether the request was accepted before the requests' window
 * began ($2, plus $3 seconds).
 */
const APPLIED_SQL = `SELECT e.event_id::text, e.request_id, e.amount, e.beyond, e.quarantined FROM (
  SELECT a.event_id, a.request_id, trim_scale(a.amount)::text AS amount,
    coalesce(a.accepted_at < $2::timestamptz + make_interval(secs => $3::float8), false) AS beyond, false AS quarantined
  FROM totals.applied_events a WHERE NOT (a.generation = ANY($1::int[]))
  UNION ALL
  SELECT DISTINCT ON (q.event_id) q.event_id, q.message_key, NULL, false, true
  FROM totals.rejected_records q
  WHERE q.event_id IS NOT NULL AND q.replayed_at IS NULL AND starts_with(q.reason, $4::text)
    AND NOT EXISTS (SELECT 1 FROM totals.applied_events a WHERE a.event_id = q.event_id)
) e ORDER BY e.event_id, e.quarantined`;

// Outside the snapshot: what is committed now.
const REREAD_APPLIED_SQL = 'SELECT event_id::text FROM totals.applied_events WHERE event_id = ANY($1::uuid[])';
const REREAD_OUTBOX_SQL = `SELECT DISTINCT event_id::text FROM ${OUTBOX_TABLE} WHERE event_id = ANY($1::uuid[])`;

/** Lost candidates are read again in groups of this many. */
const REREAD_BATCH = 1_000;

// ---- the audit --------------------------------------------------------------------------------

export async function auditInvariant(databases: AuditDatabases, options: AuditOptions = {}): Promise<InvariantReport> {
  const started = performance.now();
  const graceSeconds = options.graceSeconds ?? 30;
  const sampleSize = options.sampleSize ?? 20;
  const maxOutboxAgeSeconds = options.maxOutboxAgeSeconds ?? 300;
  const batchSize = options.batchSize ?? 10_000;
  const edgeSeconds = options.edgeSeconds ?? 60;
  const idempotencyWindowSeconds = options.idempotencyWindowSeconds ?? 7 * 86_400;

  const samples: InvariantReport['samples'] = {
    lost: [],
    appliedTwice: [],
    withoutRequest: [],
    mismatched: [],
    outboxWithoutRequest: [],
    quarantined: [],
    withoutCheckpoint: [],
  };
  const problems: InvariantReport['problems'] = {
    lost: 0,
    appliedTwice: 0,
    withoutRequest: 0,
    mismatched: 0,
    outboxWithoutRequest: 0,
    totalMismatch: false,
    withoutCheckpoint: 0,
    stuckOutbox: false,
    quarantined: 0,
  };
  const counts: InvariantReport['counts'] = {
    requests: 0,
    applied: 0,
    appliedOnce: 0,
    pendingInOutbox: 0,
    inTransit: 0,
    clearedOnReread: 0,
    rejectedRecords: 0,
    quarantined: 0,
    beyondAppliedWindow: 0,
    beyondRequestWindow: 0,
  };
  const note = <T>(list: T[], item: T) => {
    if (list.length < sampleSize) list.push(item);
  };

  // Lost candidates wait here until a group of them is read again.
  const candidates: LostCandidate[] = [];
  const reread = async () => {
    if (candidates.length === 0) return;
    const group = candidates.splice(0);
    await options.beforeReread?.(group);
    const eventIds = group.map((candidate) => candidate.eventId);
    // Both reads are fresh statements on other connections, so they see what committed after the
    // snapshot. The applied events are what matter; the outbox is read too although a row, once
    // gone, does not come back.
    const applied = await databases.totals.query<{ event_id: string }>(REREAD_APPLIED_SQL, [eventIds]);
    const pending = await databases.calculator.query<{ event_id: string }>(REREAD_OUTBOX_SQL, [eventIds]);
    const settled = new Set([...applied.rows, ...pending.rows].map((row) => row.event_id));
    for (const candidate of group) {
      if (settled.has(candidate.eventId)) {
        counts.inTransit += 1;
        counts.clearedOnReread += 1;
      } else {
        problems.lost += 1;
        note(samples.lost, `request ${candidate.requestId} (event ${candidate.eventId}, sum ${candidate.sum})`);
      }
    }
  };

  const shared = databases.calculator === databases.totals;
  requireRoom(databases.totals, shared ? 3 : 2);
  if (!shared) requireRoom(databases.calculator, 2);
  let totalsClient: pg.PoolClient | undefined;
  let calculatorClient: pg.PoolClient | undefined;
  let recorded: { total: string; count: string } | undefined;
  let ofApplied: { total: string; count: string };
  let backlog: { pending: string; oldest: number | null };
  let appliedWindow: AuditWindow;
  let requestsWindow: AuditWindow;
  try {
    totalsClient = await databases.totals.connect();
    await beginSnapshot(totalsClient);
    // The totals snapshot is taken by its first statement, before the calculator's is; in one
    // database, the calculator side takes the very same snapshot.
    const snapshot = shared ? (await totalsClient.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows[0]!.id : undefined;
    recorded = (await totalsClient.query<{ total: string; count: string }>(RECORDED_TOTAL_SQL)).rows[0];
    appliedWindow = await readAuditWindow(totalsClient, 'totals', 'applied_events');
    calculatorClient = await databases.calculator.connect();
    await beginSnapshot(calculatorClient, snapshot);
    backlog = (await calculatorClient.query<{ pending: string; oldest: number | null }>(OUTBOX_BACKLOG_SQL)).rows[0]!;
    requestsWindow = await readAuditWindow(calculatorClient, 'calculator', 'requests');
    const droppedApplied = appliedWindow.droppedGenerations;

    // Each side's set-based checks, then the sort that starts its stream for the merge: the two
    // sides at the same time.
    const totalsSide = totalsClient;
    const calculatorSide = calculatorClient;
    const [[aggregates, applied], requests] = await Promise.all([
      (async () => {
        const aggregates = (await totalsSide.query<{ total: string; count: string; rejected: string }>(TOTALS_AGGREGATES_SQL, [droppedApplied])).rows[0]!;
        const sampled: { requestId: string; times: string }[] = [];
        const candidates = await RowStream.open(totalsSide, 'audit_applied_twice', APPLIED_MORE_THAN_ONCE_SQL, [droppedApplied], batchSize);
        const group: string[] = [];
        const judge = async () => {
          const ids = group.splice(0);
          if (ids.length === 0) return;
          const { rows } = await totalsSide.query<{ request_id: string; count: string }>(APPLIED_TWICE_SQL, [droppedApplied, ids, idempotencyWindowSeconds]);
          for (const row of rows) {
            problems.appliedTwice += 1;
            note(sampled, { requestId: row.request_id, times: row.count });
          }
        };
        while (candidates.row) {
          group.push(candidates.row[0] as string);
          if (group.length >= REREAD_BATCH) await judge();
          const wait = candidates.advance();
          if (wait) await wait;
        }
        await judge();
        if (sampled.length > 0) {
          const { rows } = await totalsSide.query<{ request_id: string; events: string[] }>(APPLIED_TWICE_EVENTS_SQL, [droppedApplied, sampled.map((d) => d.requestId)]);
          const events = new Map(rows.map((row) => [row.request_id, row.events]));
          for (const { requestId, times } of sampled) {
            const some = events.get(requestId) ?? [];
            samples.appliedTwice.push(`request ${requestId} applied ${times} times (events ${some.join(', ')}${Number(times) > some.length ? ', …' : ''})`);
          }
        }
        const appliedParams = [droppedApplied, requestsWindow.since, edgeSeconds, TOO_OLD_REASON];
        return [aggregates, await openSorted(totalsSide, 'audit_applied', APPLIED_SQL, appliedParams, batchSize)] as const;
      })(),
      (async () => {
        await forEachRow(calculatorSide, 'audit_outbox_orphans', OUTBOX_WITHOUT_REQUEST_SQL, [], batchSize, (row) => {
          problems.outboxWithoutRequest += 1;
          note(samples.outboxWithoutRequest, `outbox event ${row[0] as string}`);
        });
        const requestParams = [graceSeconds, requestsWindow.droppedGenerations, appliedWindow.since, edgeSeconds];
        return openSorted(calculatorSide, 'audit_requests', REQUESTS_SQL, requestParams, batchSize);
      })(),
    ]);
    ofApplied = { total: aggregates.total, count: aggregates.count };
    counts.rejectedRecords = Number(aggregates.rejected);

    // The merge: both sides in event id order, walked side by side.
    for (;;) {
      const request = requests.row as [eventId: string, requestId: string, sum: string, recent: boolean, pending: boolean, beyond: boolean] | undefined;
      const event = applied.row as [eventId: string, requestId: string | null, amount: string | null, beyond: boolean, quarantined: boolean] | undefined;
      if (!request && !event) break;
      let advanceRequest = false;
      let advanceEvent = false;
      if (event && (!request || event[0] < request[0])) {
        if (event[4]) {
          // Its request, if any, is not among those kept: nothing more to say than that it is quarantined.
        } else if (event[3]) counts.beyondRequestWindow += 1;
        else {
          problems.withoutRequest += 1;
          note(samples.withoutRequest, `event ${event[0]} (request id ${event[1]}, amount ${event[2]})`);
        }
        advanceEvent = true;
      } else if (request && (!event || request[0] < event[0])) {
        const [eventId, requestId, sum, recent, pending, beyond] = request;
        if (pending) counts.pendingInOutbox += 1;
        else if (recent) counts.inTransit += 1;
        else if (beyond) counts.beyondAppliedWindow += 1;
        else {
          candidates.push({ eventId, requestId, sum });
          if (candidates.length >= REREAD_BATCH) await reread();
        }
        advanceRequest = true;
      } else if (event![4]) {
        counts.quarantined += 1;
        advanceRequest = advanceEvent = true;
      } else {
        const [eventId, requestId, sum] = request!;
        const [, appliedRequestId, amount] = event!;
        const reasons: string[] = [];
        if (requestId !== appliedRequestId) reasons.push(`applied as request ${appliedRequestId}, accepted as ${requestId}`);
        if (sum !== amount) reasons.push(`applied amount ${amount}, accepted sum ${sum}`);
        if (reasons.length > 0) {
          problems.mismatched += 1;
          note(samples.mismatched, { eventId, requestId, reason: reasons.join('; ') });
        } else {
          counts.appliedOnce += 1;
        }
        advanceRequest = advanceEvent = true;
      }
      if (advanceRequest) {
        counts.requests += 1;
        const wait = requests.advance();
        if (wait) await wait;
      }
      if (advanceEvent) {
        if (event![4]) {
          problems.quarantined += 1;
          note(samples.quarantined, `event ${event![0]} (request id ${event![1] ?? 'unknown'})`);
        } else counts.applied += 1;
        const wait = applied.advance();
        if (wait) await wait;
      }
    }
    await reread();
  } finally {
    if (totalsClient) await endSnapshot(totalsClient);
    if (calculatorClient) await endSnapshot(calculatorClient);
  }

  const recordedTotal = recorded ?? { total: 'missing', count: '-1' };
  // The total outlives the rows it sums: what the dropped periods added is in their checkpoints.
  const expectedTotal = BigInt(ofApplied.total) + BigInt(appliedWindow.dropped.amount);
  const expectedCount = BigInt(ofApplied.count) + BigInt(appliedWindow.dropped.rows);
  problems.totalMismatch = !recorded || BigInt(recorded.total) !== expectedTotal || BigInt(recorded.count) !== expectedCount;
  for (const [table, window] of [['calculator.requests', requestsWindow], ['totals.applied_events', appliedWindow]] as const) {
    problems.withoutCheckpoint += window.withoutCheckpoint.length;
    for (const generation of window.withoutCheckpoint) note(samples.withoutCheckpoint, `${table} generation ${generation}`);
  }
  const oldestAgeSeconds = backlog.oldest;
  problems.stuckOutbox = oldestAgeSeconds !== null && oldestAgeSeconds > maxOutboxAgeSeconds;

  const failures: string[] = [];
  if (problems.lost > 0) {
    failures.push(`${problems.lost} accepted request(s) lost: neither pending in the outbox nor applied after ${graceSeconds}s, read twice`);
  }
  if (problems.appliedTwice > 0) failures.push(`${problems.appliedTwice} request(s) applied more than once`);
  if (problems.withoutRequest > 0) failures.push(`${problems.withoutRequest} applied event(s) match no accepted request`);
  if (problems.mismatched > 0) failures.push(`${problems.mismatched} applied event(s) differ from their request (request id or amount)`);
  if (problems.outboxWithoutRequest > 0) failures.push(`${problems.outboxWithoutRequest} outbox event(s) match no accepted request`);
  if (problems.totalMismatch) {
    const dropped = appliedWindow.dropped;
    const checkpoints =
      dropped.periods > 0
        ? ` plus the checkpoints of ${dropped.periods} dropped period(s), ${dropped.amount} over ${dropped.rows}: ${expectedTotal} over ${expectedCount}`
        : '';
    failures.push(
      `totals.total says ${recordedTotal.total} over ${recordedTotal.count} events, the applied events add up to ${ofApplied.total} over ${ofApplied.count}${checkpoints}`,
    );
  }
  if (problems.withoutCheckpoint > 0) {
    failures.push(`${problems.withoutCheckpoint} dropped period(s) without a checkpoint: their rows went unaccounted for`);
  }
  if (problems.stuckOutbox) failures.push(stuckOutboxLine(Number(backlog.pending), oldestAgeSeconds!, maxOutboxAgeSeconds));
  if (problems.quarantined > 0) {
    failures.push(`${problems.quarantined} event(s) quarantined as older than the dedup window: decide with summa dlq`);
  }

  return {
    ok: failures.length === 0,
    failures,
    counts,
    total: {
      recorded: recordedTotal.total,
      recordedCount: Number(recordedTotal.count),
      ofAppliedEvents: ofApplied.total,
      appliedCount: Number(ofApplied.count),
      ofCheckpoints: appliedWindow.dropped.amount,
      checkpointCount: appliedWindow.dropped.rows,
    },
    window: {
      requests: { since: requestsWindow.since, audited: counts.requests, dropped: requestsWindow.dropped },
      applied: { since: appliedWindow.since, audited: counts.applied, dropped: appliedWindow.dropped },
      edgeSeconds,
      idempotencyWindowSeconds,
    },
    outbox: { pending: Number(backlog.pending), oldestAgeSeconds, maxAgeSeconds: maxOutboxAgeSeconds },
    samples,
    problems,
    auditSeconds: (performance.now() - started) / 1000,
  };
}

function stuckOutboxLine(pending: number, oldestAgeSeconds: number, limitSeconds: number): string {
  return (
    `relay stuck: the oldest of ${pending} outbox event(s) is ${Math.floor(oldestAgeSeconds)} s old by the database's clock ` +
    `(limit ${limitSeconds} s): events are not reaching the total`
  );
}

/** Requests accepted but not yet applied: nothing to complain about, but not quiet either. */
export function inFlight(report: InvariantReport): number {
  return report.counts.pendingInOutbox + report.counts.inTransit;
}

export interface AuditUntilQuietOptions extends AuditOptions {
  /** Keep auditing until nothing is in flight and no problem remains, for at most this long. */
  waitSeconds: number;
  pollMs?: number;
}

/**
 * Audits until the pipeline is quiet (nothing in flight) and the invariant holds, or the wait is
 * over; returns the last report. A problem seen on a live system may resolve itself, so only the
 * last report counts.
 */
export async function auditUntilQuiet(databases: AuditDatabases, options: AuditUntilQuietOptions): Promise<InvariantReport> {
  const deadline = performance.now() + options.waitSeconds * 1000;
  for (;;) {
    const report = await auditInvariant(databases, options);
    // Quarantined events wait for an operator (summa dlq), not for the pipeline: no reason to wait on.
    const onlyQuarantined = report.failures.length === 1 && report.problems.quarantined > 0;
    if (((report.ok || onlyQuarantined) && inFlight(report) === 0) || performance.now() >= deadline) return report;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
  }
}

/** What was audited row by row and what through checkpoints, in two lines. */
export function formatCoverage(report: InvariantReport): string[] {
  const { requests, applied, edgeSeconds } = report.window;
  const audited =
    requests.since === null && applied.since === null
      ? `every request (${requests.audited}) and applied event (${applied.audited}): no period dropped yet`
      : `requests of the periods since ${requests.since ?? 'the start'} (${requests.audited}), ` +
        `applied events of the periods since ${applied.since ?? 'the start'} (${applied.audited})`;
  const dropped = (side: AuditedWindow, rows: string) => `${side.dropped.periods} dropped period(s), ${side.dropped.rows} ${rows}, sum ${side.dropped.amount}`;
  const lines = [`audited request by request: ${audited}`];
  if (requests.since !== null || applied.since !== null) {
    lines.push(`checked through checkpoints: ${dropped(requests, 'requests')} / ${dropped(applied, 'applied events')}`);
    lines.push(
      `beyond the window:     ${report.counts.beyondAppliedWindow} request(s) accepted before the applied events kept (applied, if at all, in a dropped period), ` +
        `${report.counts.beyondRequestWindow} applied event(s) whose request was dropped (edge ${edgeSeconds} s)`,
    );
  }
  return lines;
}

export function formatReport(report: InvariantReport): string {
  const { counts, total, outbox } = report;
  const cleared = counts.clearedOnReread > 0 ? `, ${counts.clearedOnReread} of them found applied when read again` : '';
  const oldest = outbox.oldestAgeSeconds === null ? 'empty' : `${outbox.pending} event(s), the oldest ${outbox.oldestAgeSeconds.toFixed(1)} s old`;
  const lines = [
    `accepted requests:     ${counts.requests}`,
    `applied once:          ${counts.appliedOnce}`,
    `in flight:             ${inFlight(report)} (${counts.pendingInOutbox} in the outbox, ${counts.inTransit} published, not yet applied${cleared})`,
    ...(report.problems.quarantined > 0
      ? [`quarantined:           ${report.problems.quarantined} event(s) older than the dedup window, not applied (${counts.quarantined} of the requests kept)`]
      : []),
    `outbox:                ${oldest} (limit ${outbox.maxAgeSeconds} s)`,
    `applied events:        ${counts.applied}`,
    `rejected records:      ${counts.rejectedRecords}`,
    `total (totals.total):  ${total.recorded} over ${total.recordedCount} events`,
    `total (of events):     ${total.ofAppliedEvents} over ${total.appliedCount} events` +
      (report.window.applied.since === null ? '' : ` kept, and ${total.ofCheckpoints} over ${total.checkpointCount} in checkpoints`),
    ...formatCoverage(report),
    `audited in:            ${report.auditSeconds.toFixed(2)} s`,
  ];
  if (report.ok) {
    const dropped = report.window.requests.since !== null || report.window.applied.since !== null;
    const quiet = dropped
      ? 'OK: every accepted request kept is applied exactly once or beyond the window, and the total agrees with the checkpoints'
      : 'OK: every accepted request is applied exactly once';
    lines.push(inFlight(report) === 0 ? quiet : 'OK so far: no problem found, some requests still in flight');
    return lines.join('\n');
  }
  lines.push('FAILED:');
  for (const failure of report.failures) lines.push(`  - ${failure}`);
  const examples = [
    ...report.samples.lost.map((s) => `lost: ${s}`),
    ...report.samples.appliedTwice.map((s) => `applied twice: ${s}`),
    ...report.samples.withoutRequest.map((s) => `no request: ${s}`),
    ...report.samples.mismatched.map((m) => `mismatch: event ${m.eventId}: ${m.reason}`),
    ...report.samples.outboxWithoutRequest.map((s) => `no request: ${s}`),
    ...report.samples.quarantined.map((s) => `quarantined: ${s}`),
    ...report.samples.withoutCheckpoint.map((s) => `no checkpoint: ${s}`),
  ];
  if (examples.length > 0) {
    lines.push('examples:');
    for (const example of examples) lines.push(`  ${example}`);
  }
  return lines.join('\n');
}

/**
 * A read-only REPEATABLE READ transaction: one snapshot for every statement in it; `snapshot`, one
 * exported by another transaction, to share it.
 */
async function beginSnapshot(client: pg.ClientBase, snapshot?: string): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  if (snapshot !== undefined) await client.query(`SET TRANSACTION SNAPSHOT ${client.escapeLiteral(snapshot)}`);
  // Reading every row takes as long as it takes; a limit meant for the services' statements must not cut it short.
  await client.query('SET LOCAL statement_timeout = 0');
  // The sorts of the two streams: fewer, larger runs on disk.
  await client.query(`SET LOCAL work_mem = '64MB'`);
}

/**
 * Opens a stream of a whole table in index order as a sequential scan and a sort. Through a cursor
 * the planner favours the index, whose order is random against the table's: millions of scattered
 * page reads, many times slower than one pass and a sort on disk.
 */
async function openSorted(client: pg.ClientBase, name: string, sql: string, params: unknown[], batchSize: number): Promise<RowStream> {
  await client.query('SET LOCAL enable_indexscan = off');
  try {
    return await RowStream.open(client, name, sql, params, batchSize);
  } finally {
    await client.query('SET LOCAL enable_indexscan TO DEFAULT');
  }
}

function requireRoom(pool: pg.Pool, connections: number): void {
  const max = pool.options.max ?? 10;
  if (max < connections) {
    throw new Error(`the audit needs a pool of at least ${connections} connections here, this one allows ${max}`);
  }
}

/** Ends the snapshot (and its cursors) and returns the connection to its pool. */
async function endSnapshot(client: pg.PoolClient): Promise<void> {
  try {
    await client.query('ROLLBACK');
    client.release();
  } catch (error) {
    // A connection that cannot roll back is not given to anyone else.
    client.release(error instanceof Error ? error : true);
  }
}
