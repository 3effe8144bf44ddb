import { decodeSumAccepted, MalformedEventError } from '../events/sum-accepted.ts';
import { inTransaction, type Pool, type PoolClient } from '../platform/db/pool.ts';
import { findRejectedRecord, formatRecordId, markReplayed, parkedRecordIds, type RecordId } from './rejected-records.ts';
import { applyEvents } from './totals-store.ts';

/** What replaying one record did (or, in a dry run, would do). */
export type ReplayOutcome =
  | { id: string; status: 'added'; eventId: string; requestId: string; sum: string }
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

const IS_APPLIED_SQL = 'SELECT EXISTS (SELECT 1 FROM totals.applied_events WHERE event_id = $1) AS applied';

/**
 * Replays parked records through the consumer's apply path: each record's payload is decoded as an
 * event, and applyEvents (deduplicated by event id) and the record's replayed mark commit in one
 * transaction per record. So a replay adds each event at most once, whether it is repeated, runs
 * beside another replay, or the consumer applied the event already; and a record that still does
 * not decode stays as it was, its reason reported, without holding back the others.
 *
 * `ids` are replayed in the order given; 'all' takes every parked record, oldest first. A dry run
 * decodes and looks up, and writes nothing.
 */
export async function replayRejectedRecords(pool: Pool, ids: RecordId[] | 'all', options: { dryRun: boolean }): Promise<ReplayOutcome[]> {
  const chosen = ids === 'all' ? await parkedRecordIds(pool) : ids;
  const outcomes: ReplayOutcome[] = [];
  for (const id of chosen) outcomes.push(await inTransaction(pool, (client) => replayOne(client, id, options.dryRun)));
  return outcomes;
}

async function replayOne(client: PoolClient, recordId: RecordId, dryRun: boolean): Promise<ReplayOutcome> {
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

  if (dryRun) {
    const { rows } = await client.query<{ applied: boolean }>(IS_APPLIED_SQL, [event.eventId]);
    return { id, status: rows[0]!.applied ? 'already-applied' : 'added', ...described };
  }
  const outcome = await applyEvents(client, [{ event, partition: record.partition, offset: record.offset }]);
  if (outcome.tooOld.length > 0) return { id, status: 'too-old', ...described, horizon: outcome.horizon?.toISOString() ?? '' };
  await markReplayed(client, recordId, event.eventId);
  return { id, status: outcome.applied === 1 ? 'added' : 'already-applied', ...described };
}
