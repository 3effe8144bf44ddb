import pg from 'pg';

/**
 * Audits "no sum lost, none counted twice" from the databases alone: the calculator's accepted
 * requests and outbox against the totals' applied events and running total.
 *
 * The two schemas may live in different databases, so the comparison happens here rather than in a
 * join. Each side is read in one REPEATABLE READ snapshot, totals first: every event applied in the
 * totals snapshot was accepted before it, so its request is in the (later) calculator snapshot, and
 * an applied event without a request is a real fault. The opposite direction is not exact on a live
 * system: a request may be on its way through Kafka. Such a request is "in flight" while it is
 * younger than the grace period, and "lost" after that.
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
    /** Rows in calculator.requests: every acknowledged request has one. */
    requests: number;
    /** Rows in totals.applied_events. */
    applied: number;
    /** Requests whose event was applied exactly once. */
    appliedOnce: number;
    /** Requests whose event is still in the outbox, not yet applied. */
    pendingInOutbox: number;
    /** Requests published (no longer in the outbox) but not yet applied, accepted within the grace period. */
    inTransit: number;
    /** Rows in totals.rejected_records (records that were not valid events). */
    rejectedRecords: number;
  };
  total: { recorded: string; recordedCount: number; ofAppliedEvents: string; appliedCount: number };
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
  };
  problems: {
    /** Requests older than the grace period whose event is neither in the outbox nor applied. */
    lost: number;
    /** Requests with more than one applied event. */
    appliedTwice: number;
    /** Applied events whose event id no accepted request has. */
    withoutRequest: number;
    /** Applied events whose request id or amount differ from the request that produced the event. */
    mismatched: number;
    /** Outbox rows whose event id no accepted request has. */
    outboxWithoutRequest: number;
    /** totals.total disagrees with the applied events. */
    totalMismatch: boolean;
    /** The oldest outbox event is older than maxOutboxAgeSeconds: the relay is not delivering. */
    stuckOutbox: boolean;
  };
}

export interface AuditDatabases {
  /** Has the calculator schema (requests, outbox). */
  calculator: pg.Pool | pg.Client;
  /** Has the totals schema (total, applied_events, rejected_records); may be the same database. */
  totals: pg.Pool | pg.Client;
}

interface RequestRow {
  request_id: string;
  sum: string;
  event_id: string;
  recent: boolean;
}

interface AppliedRow {
  event_id: string;
  request_id: string;
  amount: string;
}

export async function auditInvariant(databases: AuditDatabases, options: AuditOptions = {}): Promise<InvariantReport> {
  const graceSeconds = options.graceSeconds ?? 30;
  const sampleSize = options.sampleSize ?? 20;
  const maxOutboxAgeSeconds = options.maxOutboxAgeSeconds ?? 300;

  const totals = await inSnapshot(databases.totals, async (client) => {
    const applied = await client.query<AppliedRow>('SELECT event_id::text, request_id, amount::text FROM totals.applied_events');
    const recorded = await client.query<{ total: string; count: string }>('SELECT total::text, count::text FROM totals.total WHERE id = 1');
    const ofApplied = await client.query<{ total: string; count: string }>(
      'SELECT coalesce(sum(amount), 0)::text AS total, count(*)::text AS count FROM totals.applied_events',
    );
    const rejected = await client.query<{ count: string }>('SELECT count(*)::text AS count FROM totals.rejected_records');
    return { applied: applied.rows, recorded: recorded.rows[0], ofApplied: ofApplied.rows[0]!, rejected: Number(rejected.rows[0]!.count) };
  });
  const calculator = await inSnapshot(databases.calculator, async (client) => {
    const requests = await client.query<RequestRow>(
      `SELECT request_id, sum::text, event_id::text, accepted_at > now() - make_interval(secs => $1) AS recent
       FROM calculator.requests`,
      [graceSeconds],
    );
    const outbox = await client.query<{ event_id: string }>('SELECT DISTINCT event_id::text FROM calculator.outbox');
    const backlog = await client.query<{ pending: string; oldest: number | null }>(OUTBOX_BACKLOG_SQL);
    return { requests: requests.rows, outbox: new Set(outbox.rows.map((row) => row.event_id)), backlog: backlog.rows[0]! };
  });

  const requestByEvent = new Map<string, RequestRow>();
  for (const request of calculator.requests) requestByEvent.set(request.event_id, request);
  const appliedByRequest = new Map<string, AppliedRow[]>();
  const samples: InvariantReport['samples'] = { lost: [], appliedTwice: [], withoutRequest: [], mismatched: [], outboxWithoutRequest: [] };
  const problems: InvariantReport['problems'] = {
    lost: 0,
    appliedTwice: 0,
    withoutRequest: 0,
    mismatched: 0,
    outboxWithoutRequest: 0,
    totalMismatch: false,
    stuckOutbox: false,
  };
  const note = <T>(list: T[], item: T) => {
    if (list.length < sampleSize) list.push(item);
  };

  for (const applied of totals.applied) {
    const request = requestByEvent.get(applied.event_id);
    if (!request) {
      problems.withoutRequest += 1;
      note(samples.withoutRequest, `event ${applied.event_id} (request id ${applied.request_id}, amount ${applied.amount})`);
      continue;
    }
    const reasons: string[] = [];
    if (request.request_id !== applied.request_id) reasons.push(`applied as request ${applied.request_id}, accepted as ${request.request_id}`);
    if (BigInt(request.sum) !== BigInt(applied.amount)) reasons.push(`applied amount ${applied.amount}, accepted sum ${request.sum}`);
    if (reasons.length > 0) {
      problems.mismatched += 1;
      note(samples.mismatched, { eventId: applied.event_id, requestId: request.request_id, reason: reasons.join('; ') });
    }
  }
  // Keyed by the request id the event carries: two events applied under one request id is the
  // double count an idempotency key exists to prevent, whichever requests they came from.
  for (const applied of totals.applied) {
    const list = appliedByRequest.get(applied.request_id);
    if (list) list.push(applied);
    else appliedByRequest.set(applied.request_id, [applied]);
  }
  for (const [requestId, applied] of appliedByRequest) {
    if (applied.length > 1) {
      problems.appliedTwice += 1;
      note(samples.appliedTwice, `request ${requestId} applied ${applied.length} times (events ${applied.map((a) => a.event_id).join(', ')})`);
    }
  }
  const appliedEvents = new Set(totals.applied.map((applied) => applied.event_id));

  let appliedOnce = 0;
  let pendingInOutbox = 0;
  let inTransit = 0;
  for (const request of calculator.requests) {
    if (appliedEvents.has(request.event_id)) {
      if ((appliedByRequest.get(request.request_id)?.length ?? 0) === 1) appliedOnce += 1;
    } else if (calculator.outbox.has(request.event_id)) {
      pendingInOutbox += 1;
    } else if (request.recent) {
      inTransit += 1;
    } else {
      problems.lost += 1;
      note(samples.lost, `request ${request.request_id} (event ${request.event_id}, sum ${request.sum})`);
    }
  }
  for (const eventId of calculator.outbox) {
    if (!requestByEvent.has(eventId)) {
      problems.outboxWithoutRequest += 1;
      note(samples.outboxWithoutRequest, `outbox event ${eventId}`);
    }
  }

  const recorded = totals.recorded ?? { total: 'missing', count: '-1' };
  problems.totalMismatch =
    !totals.recorded ||
    BigInt(totals.recorded.total) !== BigInt(totals.ofApplied.total) ||
    Number(totals.recorded.count) !== Number(totals.ofApplied.count);

  const oldestAgeSeconds = calculator.backlog.oldest;
  problems.stuckOutbox = oldestAgeSeconds !== null && oldestAgeSeconds > maxOutboxAgeSeconds;

  const failures: string[] = [];
  if (problems.lost > 0) failures.push(`${problems.lost} accepted request(s) lost: neither pending in the outbox nor applied after ${graceSeconds}s`);
  if (problems.appliedTwice > 0) failures.push(`${problems.appliedTwice} request(s) applied more than once`);
  if (problems.withoutRequest > 0) failures.push(`${problems.withoutRequest} applied event(s) match no accepted request`);
  if (problems.mismatched > 0) failures.push(`${problems.mismatched} applied event(s) differ from their request (request id or amount)`);
  if (problems.outboxWithoutRequest > 0) failures.push(`${problems.outboxWithoutRequest} outbox event(s) match no accepted request`);
  if (problems.totalMismatch) {
    failures.push(
      `totals.total says ${recorded.total} over ${recorded.count} events, the applied events add up to ${totals.ofApplied.total} over ${totals.ofApplied.count}`,
    );
  }
  if (problems.stuckOutbox) failures.push(stuckOutboxLine(Number(calculator.backlog.pending), oldestAgeSeconds!, maxOutboxAgeSeconds));

  return {
    ok: failures.length === 0,
    failures,
    counts: {
      requests: calculator.requests.length,
      applied: totals.applied.length,
      appliedOnce,
      pendingInOutbox,
      inTransit,
      rejectedRecords: totals.rejected,
    },
    total: {
      recorded: recorded.total,
      recordedCount: Number(recorded.count),
      ofAppliedEvents: totals.ofApplied.total,
      appliedCount: Number(totals.ofApplied.count),
    },
    outbox: { pending: Number(calculator.backlog.pending), oldestAgeSeconds, maxAgeSeconds: maxOutboxAgeSeconds },
    samples,
    problems,
  };
}

/**
 * The outbox's size and the age of its oldest row, both by the database's clock (created_at is the
 * database's now() of the transaction that wrote the row).
 */
const OUTBOX_BACKLOG_SQL = `SELECT count(*)::text AS pending, extract(epoch FROM now() - min(created_at))::float8 AS oldest FROM calculator.outbox`;

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
 * over; returns the last report. A problem seen on a live system may resolve itself (an event
 * applied between the two snapshots), so only the last report counts.
 */
export async function auditUntilQuiet(databases: AuditDatabases, options: AuditUntilQuietOptions): Promise<InvariantReport> {
  const deadline = Date.now() + options.waitSeconds * 1000;
  for (;;) {
    const report = await auditInvariant(databases, options);
    if ((report.ok && inFlight(report) === 0) || Date.now() >= deadline) return report;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
  }
}

export function formatReport(report: InvariantReport): string {
  const { counts, total } = report;
  const lines = [
    `accepted requests:     ${counts.requests}`,
    `applied once:          ${counts.appliedOnce}`,
    `in flight:             ${inFlight(report)} (${counts.pendingInOutbox} in the outbox, ${counts.inTransit} published, not yet applied)`,
    `applied events:        ${counts.applied}`,
    `rejected records:      ${counts.rejectedRecords}`,
    `total (totals.total):  ${total.recorded} over ${total.recordedCount} events`,
    `total (of events):     ${total.ofAppliedEvents} over ${total.appliedCount} events`,
  ];
  if (report.ok) {
    lines.push(inFlight(report) === 0 ? 'OK: every accepted request is applied exactly once' : 'OK so far: no problem found, some requests still in flight');
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
  ];
  if (examples.length > 0) {
    lines.push('examples:');
    for (const example of examples) lines.push(`  ${example}`);
  }
  return lines.join('\n');
}

async function inSnapshot<T>(database: pg.Pool | pg.Client, work: (client: pg.ClientBase) => Promise<T>): Promise<T> {
  const client = database instanceof pg.Pool ? await database.connect() : database;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      return await work(client);
    } finally {
      await client.query('ROLLBACK').catch(() => {});
    }
  } finally {
    if (client !== database) (client as pg.PoolClient).release();
  }
}
