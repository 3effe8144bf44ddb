import type pg from 'pg';
import { inTransaction, type Pool, type PoolClient } from '../platform/db/pool.ts';
import type { SumAccepted } from '../events/sum-accepted.ts';
import type { IncomingRecord } from '../platform/kafka/records.ts';
import { currentGenerationSql } from '../platform/db/period-partitions.ts';
import { isPermanentDatabaseError } from './database-errors.ts';
import { preparedStatement, withValues, type PreparedStatement } from '../platform/db/prepared-statement.ts';
import { TOTALS_SCHEMA } from './schema.ts';

/**
 * The dedup horizon: the latest accepted_at among the events of every generation of applied events
 * that was dropped (or is being dropped). An event accepted then or earlier may have been applied in
 * one of them, where it can no longer be found, so it is not applied but quarantined. Retiring a
 * generation commits this before its rows go (period-partitions.ts), so a statement that no longer
 * sees the rows sees the horizon that covers them.
 */
export const DEDUP_HORIZON_SQL = `SELECT max(max_accepted_at) AS at FROM totals.partitions WHERE table_name = 'applied_events' AND retired_at IS NOT NULL`;

const CURRENT_APPLIED_GENERATION = currentGenerationSql(TOTALS_SCHEMA, 'applied_events');

/** The reason a quarantined event is kept with in totals.rejected_records; `summa verify` and `summa dlq` look for it. */
export const TOO_OLD_REASON = 'older than the dedup window';

/**
 * Applies events that are not applied yet and adds exactly those to the total, in one statement:
 * an event delivered twice finds its row in applied_events and adds nothing. The total is kept per
 * Kafka partition (totals.total sums the rows), so a batch locks only the rows of its events'
 * partitions, in partition order, and consumers of other partitions do not wait for it.
 *
 * With `saveOffsets`, the same statement also saves the consumed offsets ($8 the group, $9–$12 as
 * SAVE_OFFSETS_SQL takes them), so that on its own, without BEGIN and COMMIT, it is the whole of a
 * batch's transaction; and it then changes nothing at all when an event of the batch is too old
 * (`too_old` not empty), since quarantining that one must commit with the rest.
 */
function applyStatement(saveOffsets: boolean): string {
  const onlyWithoutStale = saveOffsets ? 'AND NOT EXISTS (SELECT 1 FROM stale)' : '';
  return `
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::timestamptz[], $5::int4[], $6::int8[])
    AS t(event_id, request_id, amount, accepted_at, kafka_partition, kafka_offset)
), horizon AS (
  -- $7: the operator's \`summa dlq replay --older-than-window\`, after checking the event was not applied.
  SELECT CASE WHEN $7::bool THEN NULL ELSE h.at END AS at FROM (${DEDUP_HORIZON_SQL}) h
), earlier AS (
  SELECT event_id FROM totals.applied_events WHERE event_id = ANY($1::uuid[])
), stale AS (
  SELECT input.event_id FROM input, horizon
  WHERE horizon.at IS NOT NULL AND input.accepted_at <= horizon.at
    AND NOT EXISTS (SELECT 1 FROM earlier WHERE earlier.event_id = input.event_id)
), fresh AS (
  SELECT input.* FROM input, horizon
  WHERE (horizon.at IS NULL OR input.accepted_at > horizon.at)
    AND NOT EXISTS (SELECT 1 FROM earlier WHERE earlier.event_id = input.event_id)
    ${onlyWithoutStale}
), applied AS (
  INSERT INTO totals.applied_events (event_id, request_id, amount, accepted_at, kafka_partition, kafka_offset, generation)
  SELECT event_id, request_id, amount, accepted_at, kafka_partition, kafka_offset, ${CURRENT_APPLIED_GENERATION} FROM fresh
  ON CONFLICT (event_id, generation) DO NOTHING
  RETURNING amount, accepted_at, kafka_partition
), added AS (
  INSERT INTO totals.partition_totals AS p (partition, total, count)
  SELECT kafka_partition, sum(amount), count(*) FROM applied GROUP BY kafka_partition ORDER BY kafka_partition
  ON CONFLICT (partition) DO UPDATE
  SET total = p.total + excluded.total,
      count = p.count + excluded.count,
      updated_at = now()
)${
    saveOffsets
      ? `, saved AS (
  INSERT INTO totals.consumer_offsets (group_id, topic, topic_id, partition, next_offset)
  SELECT $8, t.* FROM unnest($9::text[], $10::text[], $11::int4[], $12::int8[]) AS t
  WHERE NOT EXISTS (SELECT 1 FROM stale)
  ${OFFSETS_MOVE_FORWARD}
)`
      : ''
  }
SELECT (SELECT count(*) FROM applied)::int AS applied,
       (SELECT coalesce(json_agg(extract(epoch FROM accepted_at)), '[]') FROM applied) AS accepted_epochs,
       (SELECT coalesce(json_agg(event_id), '[]') FROM stale) AS too_old,
       (SELECT at FROM horizon) AS horizon`;
}

/**
 * Offsets only move forward, whatever order concurrent consumers commit in; those of another
 * incarnation of the topic (another topic id) are replaced, not compared.
 */
const OFFSETS_MOVE_FORWARD = `ON CONFLICT (group_id, topic, partition) DO UPDATE
  SET next_offset = CASE WHEN consumer_offsets.topic_id IS NOT DISTINCT FROM excluded.topic_id
                         THEN greatest(consumer_offsets.next_offset, excluded.next_offset)
                         ELSE excluded.next_offset END,
      topic_id = excluded.topic_id,
      updated_at = now()`;

const APPLY = preparedStatement('summa_totals_apply', applyStatement(false));
const APPLY_AND_SAVE_OFFSETS = preparedStatement('summa_totals_apply_and_save_offsets', applyStatement(true));

const READ_TOTAL = preparedStatement('summa_totals_read_total', 'SELECT total::text AS total, count::text AS count FROM totals.total WHERE id = 1');

const REJECT_SQL = `
INSERT INTO totals.rejected_records (topic, kafka_partition, kafka_offset, reason, message_key, payload, dead_lettered, event_id)
SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[], $4::text[], $5::text[], $6::bytea[], $7::bool[], $8::uuid[])
ON CONFLICT DO NOTHING`;

const SAVE_OFFSETS_SQL = `
INSERT INTO totals.consumer_offsets (group_id, topic, topic_id, partition, next_offset)
SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int4[], $5::int8[])
${OFFSETS_MOVE_FORWARD}`;

const READ_OFFSETS_SQL = `
SELECT partition, next_offset::text AS next_offset FROM totals.consumer_offsets
WHERE group_id = $1 AND topic = $2 AND topic_id = $3 AND partition = ANY($4::int4[])`;

export interface EventAtOffset {
  event: SumAccepted;
  partition: number;
  offset: bigint;
  /** The record it was read from: kept as it came when the event is quarantined. */
  source?: Pick<IncomingRecord, 'topic' | 'key' | 'value'>;
}

/** A consumed record that is not a valid event, and why: kept in totals.rejected_records. */
export interface RejectedRecord extends Pick<IncomingRecord, 'topic' | 'partition' | 'offset' | 'key' | 'value'> {
  reason: string;
  /** Whether the dead-letter topic took it; null without one. */
  deadLettered: boolean | null;
  /** The event it carries, when it is a valid event kept back (quarantined as too old). */
  eventId?: string;
}

export interface PartitionOffset extends Pick<IncomingRecord, 'topic' | 'topicId' | 'partition'> {
  nextOffset: bigint;
}

export interface BatchOutcome {
  applied: number;
  duplicates: number;
  /**
   * Events not applied because they are older than the dedup horizon (and not among the applied
   * events kept): applyBatch quarantines them in totals.rejected_records.
   */
  tooOld: EventAtOffset[];
  /** The dedup horizon the statement saw; null while no applied events were ever dropped. */
  horizon: Date | null;
  /** When each newly applied event was accepted by the calculator, in ms since the epoch. */
  acceptedAtMs: number[];
}

export interface TotalSnapshot {
  total: string;
  count: number;
}

export interface AppliedSum {
  requestId: string;
  eventId: string;
  sum: string;
  acceptedAt: Date;
  appliedAt: Date;
}

export class TotalsStore {
  constructor(private readonly pool: Pool) {}

  /**
   * One transaction: new events, rejected records and the consumed offsets commit together. A batch
   * of events alone (the usual one) is a single statement, with no BEGIN and COMMIT round trips;
   * one with records to reject, or an event to quarantine, takes a transaction of several.
   */
  async applyBatch(groupId: string, events: EventAtOffset[], rejected: RejectedRecord[], offsets: PartitionOffset[]): Promise<BatchOutcome> {
    if (rejected.length === 0 && events.length > 0) {
      const outcome = await runApply(this.pool, APPLY_AND_SAVE_OFFSETS, events, false, [
        groupId,
        offsets.map((o) => o.topic),
        offsets.map((o) => o.topicId),
        offsets.map((o) => o.partition),
        offsets.map((o) => o.nextOffset.toString()),
      ]);
      // An event too old to apply: the statement changed nothing, and the transaction below quarantines it.
      if (outcome.tooOld.length === 0) return outcome;
    }
    return inTransaction(this.pool, async (client) => {
      const outcome = await applyEvents(client, events);
      rejected = [...rejected, ...outcome.tooOld.map((event) => quarantined(event, outcome.horizon))];
      if (rejected.length > 0) {
        await client.query(REJECT_SQL, [
          rejected.map((r) => r.topic),
          rejected.map((r) => r.partition),
          rejected.map((r) => r.offset.toString()),
          rejected.map((r) => storableText(r.reason)),
          rejected.map((r) => (r.key === null ? null : storableText(r.key))),
          rejected.map((r) => r.value),
          rejected.map((r) => r.deadLettered),
          rejected.map((r) => r.eventId ?? null),
        ]);
      }
      if (offsets.length > 0) {
        await client.query(SAVE_OFFSETS_SQL, [
          groupId,
          offsets.map((o) => o.topic),
          offsets.map((o) => o.topicId),
          offsets.map((o) => o.partition),
          offsets.map((o) => o.nextOffset.toString()),
        ]);
      }
      return outcome;
    });
  }

  /**
   * The events PostgreSQL refuses to apply, each with its error: the events are applied in halves,
   * each under a savepoint, and a half that fails for its data is split again until each refused
   * event stands alone. Nothing is kept: the transaction is rolled back. An error that is not about
   * the data (a lost connection, a timeout) is thrown.
   */
  async findRefused(events: EventAtOffset[]): Promise<Map<EventAtOffset, pg.DatabaseError>> {
    const refused = new Map<EventAtOffset, pg.DatabaseError>();
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await probe(client, events, refused);
      return refused;
    } finally {
      await client.query('ROLLBACK').catch(() => {});
      client.release();
    }
  }

  /**
   * The next offset to read per partition, as stored with the events of `groupId`, for the topic
   * under its current id (rows of an earlier topic of that name, or from before ids were kept, are
   * left out).
   */
  async readOffsets(groupId: string, topic: string, topicId: string, partitions: number[]): Promise<Map<number, bigint>> {
    const { rows } = await this.pool.query<{ partition: number; next_offset: string }>(READ_OFFSETS_SQL, [groupId, topic, topicId, partitions]);
    return new Map(rows.map((row) => [row.partition, BigInt(row.next_offset)]));
  }

  async readTotal(): Promise<TotalSnapshot> {
    const { rows } = await this.pool.query<{ total: string; count: string }>(withValues(READ_TOTAL, []));
    return { total: rows[0]!.total, count: Number(rows[0]!.count) };
  }

  async findByRequestId(requestId: string): Promise<AppliedSum | undefined> {
    const { rows } = await this.pool.query<{ event_id: string; amount: string; accepted_at: Date; applied_at: Date }>(
      'SELECT event_id, amount::text AS amount, accepted_at, applied_at FROM totals.applied_events WHERE request_id = $1 ORDER BY applied_at LIMIT 1',
      [requestId],
    );
    const row = rows[0];
    if (!row) return undefined;
    return { requestId, eventId: row.event_id, sum: row.amount, acceptedAt: row.accepted_at, appliedAt: row.applied_at };
  }
}

export interface ApplyOptions {
  /**
   * Applies events older than the dedup horizon too, instead of reporting them in `tooOld`. Only
   * for an operator who checked that the event was not applied in a period already dropped
   * (`summa dlq replay --older-than-window`); the consumer never sets it.
   */
  skipDedupHorizon?: boolean;
}

/** The apply step of applyBatch, inside the caller's transaction; `summa dlq replay` applies through it too. */
export function applyEvents(client: PoolClient, events: EventAtOffset[], options: ApplyOptions = {}): Promise<BatchOutcome> {
  return runApply(client, APPLY, events, options.skipDedupHorizon ?? false, []);
}

/** Runs one of the apply statements on `events`, with `more` parameters after the first seven. */
async function runApply(
  on: Pick<PoolClient, 'query'>,
  statement: PreparedStatement,
  events: EventAtOffset[],
  skipDedupHorizon: boolean,
  more: unknown[],
): Promise<BatchOutcome> {
  // The same event twice in one batch would be inserted once anyway; dropping it here keeps the
  // statement simple. Sorting fixes the lock order between concurrent consumers.
  const unique = [...new Map(events.map((e) => [e.event.eventId, e])).values()].sort((a, b) =>
    a.event.eventId < b.event.eventId ? -1 : 1,
  );
  if (unique.length === 0) return { applied: 0, duplicates: events.length, acceptedAtMs: [], tooOld: [], horizon: null };
  const { rows } = await on.query<{ applied: number; accepted_epochs: number[]; too_old: string[]; horizon: Date | null }>(
    withValues(statement, [
    unique.map((e) => e.event.eventId),
    unique.map((e) => e.event.requestId),
    unique.map((e) => e.event.sum.toString()),
    unique.map((e) => postgresTimestamp(e.event.acceptedAt)),
    unique.map((e) => e.partition),
    unique.map((e) => e.offset.toString()),
      skipDedupHorizon,
      ...more,
    ]),
  );
  const { applied, accepted_epochs, too_old, horizon } = rows[0]!;
  const tooOldIds = new Set(too_old);
  const tooOld = unique.filter((e) => tooOldIds.has(e.event.eventId));
  return { applied, duplicates: events.length - applied - tooOld.length, acceptedAtMs: accepted_epochs.map((s) => s * 1000), tooOld, horizon };
}

/** Applies `events` under a savepoint, splitting them until each one PostgreSQL refuses is found. */
async function probe(client: PoolClient, events: EventAtOffset[], refused: Map<EventAtOffset, pg.DatabaseError>): Promise<void> {
  if (events.length === 0) return;
  await client.query('SAVEPOINT probe');
  try {
    await applyEvents(client, events);
    await client.query('RELEASE SAVEPOINT probe');
    return;
  } catch (error) {
    if (!isPermanentDatabaseError(error)) throw error;
    await client.query('ROLLBACK TO SAVEPOINT probe; RELEASE SAVEPOINT probe');
    if (events.length === 1) {
      refused.set(events[0]!, error);
      return;
    }
  }
  const half = Math.ceil(events.length / 2);
  await probe(client, events.slice(0, half), refused);
  await probe(client, events.slice(half), refused);
}

/**
 * A timestamp as PostgreSQL reads it, in UTC. node-postgres would send a Date in the process's
 * time zone, whose whole-minute offset is wrong for dates under a local mean time (Paris before
 * 1911 is 9 min 21 s ahead: the stored instant would move by 21 s); and toISOString()'s six-digit
 * years are not PostgreSQL's.
 */
function postgresTimestamp(date: Date): string {
  const pad = (value: number, width = 2) => String(value).padStart(width, '0');
  const year = date.getUTCFullYear();
  return (
    `${pad(year < 1 ? 1 - year : year, 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}` +
    `T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.${pad(date.getUTCMilliseconds(), 3)}+00:00` +
    (year < 1 ? ' BC' : '')
  );
}

/** Text PostgreSQL takes from anything: a NUL character (a Kafka key may hold one) becomes U+FFFD. */
function storableText(value: string): string {
  return value.replaceAll('\u0000', '\uFFFD');
}

/** A valid event kept back because it is older than the dedup horizon, as a rejected record. */
function quarantined(event: EventAtOffset, horizon: Date | null): RejectedRecord {
  const accepted = event.event.acceptedAt.toISOString();
  return {
    topic: event.source?.topic ?? '',
    partition: event.partition,
    offset: event.offset,
    key: event.source?.key ?? event.event.requestId,
    value: event.source?.value ?? Buffer.alloc(0),
    reason:
      `${TOO_OLD_REASON}: event ${event.event.eventId} (request ${JSON.stringify(event.event.requestId)}) was accepted at ${accepted}, ` +
      `not after ${horizon?.toISOString() ?? 'the horizon'}, the latest accepted_at of the applied events already dropped; ` +
      'it may have been applied then, so it is kept here instead of being applied again',
    deadLettered: null,
    eventId: event.event.eventId,
  };
}
