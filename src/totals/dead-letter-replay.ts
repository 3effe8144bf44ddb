import { decodeSumAccepted, MalformedEventError } from '../events/sum-accepted.ts';
import { inTransaction, type Pool, type PoolClient } from '../platform/db/pool.ts';
import { findRejectedRecord, formatRecordId, markReplayed, parkedRecordIds, type RecordId } from './rejected-records.ts';
import { applyEvents, DEDUP_HORIZON_SQL } from './totals-store.ts';

/** What replaying one record did (or, in a dry run, would do). */
export type ReplayOutcome =
  /** `olderThanWindow`: added although older than the dedup window, as the operator asked. */
  | { id: string; status: 'added'; eventId: string; requestId: string; sum: string; olderThanWindow?: true }
  | { id: string; status: 'already-applied'; eventId: string; requestId: string; sum: string }
  | { id: string; status: 'already-replayed'; replayedAt: string; eventId: string | null }
  | { id: string; status: 'invalid'; reason: string }
  /** Older than the dedup window: it may have been applied in a period already dropped; left parked. */
  | { id: string; status: 'too-old'; eventId: string; requestId: string; sum: string; horizon: string }
  | { id: string; status: 'not-found' };

/** Outcomes that leave a record parked (or name none): the command fails on any of them. */
export function isFailure(outcome: ReplayOutcome): boolean {
  return outcome.status === 'invalid' || outcome.status === 'not-found' || outcome.status === 'too-old';
}

/** What applyEvents would decide for one event, without writing: applied already, or older than the horizon. */
const WOULD_APPLY_SQL = `
SELECT EXISTS (SELECT 1 FROM totals.applied_events WHERE event_id = $1) AS applied,
       (SELECT at FROM (${DEDUP_HORIZON_SQL}) h) AS horizon`;

export interface ReplayOptions {
  /** Decode and look up only; write nothing. */
  dryRun: boolean;
  /**
   * Apply events older than the dedup window too (they are otherwise left parked as 'too-old'): the
   * operator's decision, once they checked the event was not applied before (summa verify).
   */
  olderThanWindow?: boolean;
}

/**
 * Replays parked records through the consumer's apply path: each record's payload is decoded as an
 * event, and applyEvents (deduplicated by event id) and the record's replayed mark commit in one
 * transaction per record. So a replay adds each event at most once, whether it is repeated, runs
 * beside another replay, or the consumer applied the event already; and a record that still does
 * not decode stays as it was, its reason reported, without holding back the others.
 *
 * `ids` are replayed in the order given; 'all' takes every parked record, oldest first. A dry run
 * decodes and looks up, and writes nothing; it tells what the replay would do, too old included.
 */
export async function replayRejectedRecords(pool: Pool, ids: RecordId[] | 'all', options: ReplayOptions): Promise<ReplayOutcome[]> {
  const chosen = ids === 'all' ? await parkedRecordIds(pool) : ids;
  const outcomes: ReplayOutcome[] = [];
  for (const id of chosen) outcomes.push(await inTransaction(pool, (client) => replayOne(client, id, options)));
  return outcomes;
}

async function replayOne(client: PoolClient, recordId: RecordId, { dryRun, olderThanWindow = false }: ReplayOptions): Promise<ReplayOutcome> {
  const id = formatRecordId(recordId);
  // Locked, so that of two replays of one record the second finds it replayed.
  const record = await findRejectedRecord(client, recordId, { lock: !dryRun });
  if (!record) return { id, status: 'not-found' };
  if (record.replayedAt) return { id, status: 'already-replayed', replayedAt: record.replayedAt.toISOString(), eventId: record.replayedEventId };

  let event;
  try {
    // A record without a value (a tombstone) was parked as one; it decodes as nothing.
    event = decodeSumAccepted(record.payload ?? Buffer.alloc(0));
  } catch (error) {
    if (!(error instanceof MalformedEventError)) throw error;
    return { id, status: 'invalid', reason: error.message };
  }
  const described = { eventId: event.eventId, requestId: event.requestId, sum: event.sum.toString() };

  // Decided before applying, as the apply statement decides, so that a forced replay can say so.
  const { rows } = await client.query<{ applied: boolean; horizon: Date | null }>(WOULD_APPLY_SQL, [event.eventId]);
  const { applied, horizon } = rows[0]!;
  const tooOld = !applied && horizon !== null && event.acceptedAt.getTime() <= horizon.getTime();
  if (tooOld && !olderThanWindow) return { id, status: 'too-old', ...described, horizon: horizon.toISOString() };
  const forced = tooOld ? { olderThanWindow: true as const } : {};
  if (dryRun) return applied ? { id, status: 'already-applied', ...described } : { id, status: 'added', ...described, ...forced };

  const outcome = await applyEvents(client, [{ event, partition: record.partition, offset: record.offset }], { skipDedupHorizon: olderThanWindow });
  // The horizon may have moved since it was read (a partition retired meanwhile): the statement's word counts.
  if (outcome.tooOld.length > 0) return { id, status: 'too-old', ...described, horizon: outcome.horizon?.toISOString() ?? '' };
  await markReplayed(client, recordId, event.eventId);
  return outcome.applied === 1 ? { id, status: 'added', ...described, ...forced } : { id, status: 'already-applied', ...described };
}
