import type { Pool, PoolClient } from '../platform/db/pool.ts';
import { TOO_OLD_REASON } from './totals-store.ts';

// totals.rejected_records as an operator sees it: records that were not valid events, parked with
// their reason (src/totals/totals-store.ts writes them), and whether they have been replayed since.

/** Where a record was consumed from: its key in totals.rejected_records. */
export interface RecordId {
  topic: string;
  partition: number;
  offset: bigint;
}

export interface RejectedRecordRow extends RecordId {
  reason: string;
  key: string | null;
  payload: Buffer | null;
  rejectedAt: Date;
  /** Null while parked. */
  replayedAt: Date | null;
  replayedEventId: string | null;
  /** The event a valid record carries, set when it was quarantined as older than the dedup window. */
  eventId: string | null;
  /** Kept back as older than the dedup window (a valid event that may have been applied), not refused as invalid. */
  quarantined: boolean;
}

export interface RejectedRecordListing {
  parked: number;
  replayed: number;
  /** Of the parked ones, those quarantined as older than the dedup window. */
  parkedTooOld: number;
  /** Newest first, at most the limit asked for. */
  records: RejectedRecordRow[];
}

// Kafka topic names are made of these characters only, so '/' cannot be part of one.
const RECORD_ID = /^([A-Za-z0-9._-]{1,249})\/(\d{1,10})\/(\d{1,19})$/;
const MAX_PARTITION = 2 ** 31 - 1;
const MAX_OFFSET = 2n ** 63n - 1n;

/** `topic/partition/offset`, as `summa dlq` prints and reads it. */
export function formatRecordId(id: RecordId): string {
  return `${id.topic}/${id.partition}/${id.offset}`;
}

/** The record id in `text`, or undefined when it is not one. */
export function parseRecordId(text: string): RecordId | undefined {
  const match = RECORD_ID.exec(text);
  if (!match) return undefined;
  const partition = Number(match[2]);
  const offset = BigInt(match[3]!);
  if (partition > MAX_PARTITION || offset > MAX_OFFSET) return undefined;
  return { topic: match[1]!, partition, offset };
}

const COLUMNS = `topic, kafka_partition, kafka_offset::text AS kafka_offset, reason, message_key, payload, rejected_at,
                 replayed_at, replayed_event_id::text AS replayed_event_id, event_id::text AS event_id`;

const COUNT_SQL = `
SELECT count(*) FILTER (WHERE replayed_at IS NULL)::int AS parked,
       count(*) FILTER (WHERE replayed_at IS NOT NULL)::int AS replayed,
       count(*) FILTER (WHERE replayed_at IS NULL AND starts_with(reason, $1))::int AS parked_too_old
FROM totals.rejected_records`;

const LIST_SQL = `
SELECT ${COLUMNS}
FROM totals.rejected_records
WHERE $1 OR replayed_at IS NULL
ORDER BY rejected_at DESC, topic DESC, kafka_partition DESC, kafka_offset DESC
LIMIT $2`;

/** Oldest first: replaying them in the order they came keeps the total's history in that order too. */
const PARKED_IDS_SQL = `
SELECT topic, kafka_partition, kafka_offset::text AS kafka_offset
FROM totals.rejected_records
WHERE replayed_at IS NULL
ORDER BY rejected_at, topic, kafka_partition, kafka_offset`;

const FIND_SQL = `
SELECT ${COLUMNS}
FROM totals.rejected_records
WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3`;

const MARK_REPLAYED_SQL = `
UPDATE totals.rejected_records
SET replayed_at = now(), replayed_event_id = $4
WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3`;

interface Row {
  topic: string;
  kafka_partition: number;
  kafka_offset: string;
  reason: string;
  message_key: string | null;
  payload: Buffer | null;
  rejected_at: Date;
  replayed_at: Date | null;
  replayed_event_id: string | null;
  event_id: string | null;
}

const toRow = (row: Row): RejectedRecordRow => ({
  topic: row.topic,
  partition: row.kafka_partition,
  offset: BigInt(row.kafka_offset),
  reason: row.reason,
  key: row.message_key,
  payload: row.payload,
  rejectedAt: row.rejected_at,
  replayedAt: row.replayed_at,
  replayedEventId: row.replayed_event_id,
  eventId: row.event_id,
  quarantined: row.event_id !== null && row.reason.startsWith(TOO_OLD_REASON),
});

const idParams = (id: RecordId) => [id.topic, id.partition, id.offset.toString()];

/** The counts, and the newest `limit` records: parked ones only unless `includeReplayed`. */
export async function listRejectedRecords(
  db: Pool | PoolClient,
  options: { limit: number; includeReplayed: boolean },
): Promise<RejectedRecordListing> {
  const counts = await db.query<{ parked: number; replayed: number; parked_too_old: number }>(COUNT_SQL, [TOO_OLD_REASON]);
  const { rows } = await db.query<Row>(LIST_SQL, [options.includeReplayed, options.limit]);
  const { parked, replayed, parked_too_old: parkedTooOld } = counts.rows[0]!;
  return { parked, replayed, parkedTooOld, records: rows.map(toRow) };
}

export async function parkedRecordIds(db: Pool | PoolClient): Promise<RecordId[]> {
  const { rows } = await db.query<Pick<Row, 'topic' | 'kafka_partition' | 'kafka_offset'>>(PARKED_IDS_SQL);
  return rows.map((row) => ({ topic: row.topic, partition: row.kafka_partition, offset: BigInt(row.kafka_offset) }));
}

/** The record, locked against a concurrent replay until the transaction ends when `lock` is set. */
export async function findRejectedRecord(client: PoolClient, id: RecordId, options: { lock: boolean }): Promise<RejectedRecordRow | undefined> {
  const { rows } = await client.query<Row>(options.lock ? `${FIND_SQL} FOR UPDATE` : FIND_SQL, idParams(id));
  return rows[0] && toRow(rows[0]);
}

export async function markReplayed(client: PoolClient, id: RecordId, eventId: string): Promise<void> {
  await client.query(MARK_REPLAYED_SQL, [...idParams(id), eventId]);
}
