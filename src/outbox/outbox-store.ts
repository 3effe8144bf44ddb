import type { Pool, PoolClient } from '../platform/db/pool.ts';
import { OUTBOX_TABLE } from '../calculator/schema.ts';
import { preparedStatement, withValues } from '../platform/db/prepared-statement.ts';

// Every statement on the outbox table lives here: the insert the calculator runs in the same
// statement as its request rows; the relay's claim, delete, release and failure bookkeeping; the
// backlog the metrics read; and the parked events' listing and release. (`summa verify` reads the
// table too, joined with the requests and the applied events, in its own read-only audit.)
//
// The relay holds no lock and no transaction while it publishes. It claims rows with a lease: one
// statement stamps them with a claim token of its own (claimed_by) and a deadline (claimed_until,
// by the database's clock, so the relays' clocks do not matter). No other relay claims a row while
// its lease runs. Then it publishes, with nothing open in the database, and afterwards deletes what
// Kafka acknowledged, again in one statement.
//
// Why the lease need not outlast the slowest publish. A publish may take minutes in the worst case
// (the client's retries, each up to its connect and request timeouts, behind another caller's send,
// after the producer's backoff), and a lease that long would keep the rows of a relay that vanished
// from everyone for as long. The lease is shorter, so it may run out while the publish is still
// under way, and another relay then claims and publishes the same rows. That is safe:
// - Nothing is lost: a row is deleted only by a relay that saw Kafka acknowledge its event itself,
//   and an acknowledged event is in Kafka whoever holds the row by then.
// - What follows the publish — the delete, the release, the failure count, parking — matches only
//   rows still held under the same claim token. A relay whose lease ran out therefore leaves rows
//   another relay has claimed since to that relay: it does not release them to a third one, count
//   its failure against them or park them while they are being published.
// - The price is duplicates in Kafka, which the consumer absorbs by event id, as it absorbs those
//   of a relay that dies between the ack and the delete.

/** One event waiting in the outbox. */
export interface OutboxRow {
  id: string;
  event_id: string;
  topic: string;
  message_key: string;
  payload: string;
  headers: Record<string, string>;
  created_at: Date;
  /** Failed publishes so far that were the event's own fault. */
  attempts: number;
}

/**
 * The INSERT that puts events into the outbox, for use as the last part of a statement whose
 * earlier parts choose the rows: `select` yields (event_id, topic, message_key, payload, headers,
 * created_at) in that order. Returns the id and message key (the request id) of each row written.
 */
export function outboxInsertSql(select: string): string {
  return `INSERT INTO ${OUTBOX_TABLE} (event_id, topic, message_key, payload, headers, created_at)
${select}
RETURNING id, message_key`;
}

/**
 * Under change data capture (RELAY_MODE=debezium) the calculator deletes the rows it wrote before
 * its transaction commits: the write-ahead log still carries their inserts, which is all the
 * capture reads, and the table never grows. A statement of its own: the INSERT's statement cannot
 * see the rows it writes.
 */
const DELETE_CAPTURED_SQL = `DELETE FROM ${OUTBOX_TABLE} WHERE id = ANY($1::bigint[])`;

/** Deletes outbox rows written earlier in the caller's transaction, for capture mode. */
export async function deleteCapturedOutboxRows(client: Pick<PoolClient, 'query'>, ids: readonly string[]): Promise<void> {
  await client.query(DELETE_CAPTURED_SQL, [ids]);
}

/**
 * Claims the oldest events nobody holds: neither under a running lease nor parked. SKIP LOCKED lets
 * relays claiming at the same moment pass each other's rows instead of waiting (the row locks last
 * only as long as this statement). Since a row leaves the table only after it is published, a
 * transaction that commits late is picked up by a later claim rather than skipped by a cursor.
 */
const CLAIM = preparedStatement('summa_outbox_claim', `
WITH claimable AS (
  SELECT id
  FROM ${OUTBOX_TABLE}
  WHERE (claimed_until IS NULL OR claimed_until < now()) AND parked_at IS NULL
  ORDER BY id
  LIMIT $1
  FOR UPDATE SKIP LOCKED
)
UPDATE ${OUTBOX_TABLE} AS outbox
SET claimed_by = $2, claimed_until = now() + make_interval(secs => $3 / 1000.0)
FROM claimable
WHERE outbox.id = claimable.id
RETURNING outbox.id, outbox.event_id, outbox.topic, outbox.message_key, outbox.payload, outbox.headers,
  outbox.created_at, outbox.attempts`);

const DELETE = preparedStatement('summa_outbox_delete', `DELETE FROM ${OUTBOX_TABLE} WHERE id = ANY($1::bigint[]) AND claimed_by = $2`);

/** Gives rows back at once: Kafka was unavailable, which is no fault of theirs. */
const RELEASE_SQL = `
UPDATE ${OUTBOX_TABLE}
SET claimed_by = NULL, claimed_until = NULL
WHERE id = ANY($1::bigint[]) AND claimed_by = $2`;

/**
 * Counts a failure that was the rows' own against them: they are tried again after $4 ms (the
 * claim's deadline is pushed out to then, so that the rows behind them go first), or parked once
 * they reach $5 attempts.
 */
const CHARGE_SQL = `
UPDATE ${OUTBOX_TABLE}
SET attempts = attempts + 1,
    last_error = $3,
    claimed_until = now() + make_interval(secs => $4 / 1000.0),
    parked_at = CASE WHEN attempts + 1 >= $5 THEN now() END
WHERE id = ANY($1::bigint[]) AND claimed_by = $2
RETURNING id, event_id, topic, attempts, parked_at IS NOT NULL AS parked`;

const BACKLOG_SQL = `
SELECT count(*) FILTER (WHERE parked_at IS NULL) AS pending,
       count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked,
       extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL))::float8 AS oldest
FROM ${OUTBOX_TABLE}`;

/**
 * Takes parked events back into the queue, with their attempts reset: all of them, or those with
 * the given event ids. The SQL an operator would run by hand, also served by `summa outbox release`.
 */
const RELEASE_PARKED_SQL = `
UPDATE ${OUTBOX_TABLE}
SET parked_at = NULL, attempts = 0, claimed_by = NULL, claimed_until = NULL
WHERE parked_at IS NOT NULL AND ($1::uuid[] IS NULL OR event_id = ANY($1::uuid[]))
RETURNING event_id, topic, last_error`;

const PARKED_SQL = `
SELECT event_id, topic, attempts, last_error, parked_at, created_at
FROM ${OUTBOX_TABLE}
WHERE parked_at IS NOT NULL
ORDER BY id`;

export interface ClaimOptions {
  limit: number;
  /** The claim's token, unique to this claim: what the delete, release and charge must match. */
  claimant: string;
  leaseMs: number;
}

/** Claims up to `limit` of the oldest claimable events for `leaseMs`, oldest first. */
export async function claimOutboxRows(pool: Pool, { limit, claimant, leaseMs }: ClaimOptions): Promise<OutboxRow[]> {
  const { rows } = await pool.query<OutboxRow>(withValues(CLAIM, [limit, claimant, leaseMs]));
  // UPDATE … RETURNING promises no order.
  return rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
}

/** Removes published events still held under `claimant`; returns how many. */
export async function deleteOutboxRows(pool: Pool, ids: readonly string[], claimant: string): Promise<number> {
  return (await pool.query(withValues(DELETE, [ids, claimant]))).rowCount ?? 0;
}

/** Gives events still held under `claimant` back to be claimed at once. */
export async function releaseOutboxRows(pool: Pool, ids: readonly string[], claimant: string): Promise<void> {
  await pool.query(RELEASE_SQL, [ids, claimant]);
}

export interface ChargedRow {
  id: string;
  event_id: string;
  topic: string;
  attempts: number;
  parked: boolean;
}

/**
 * Counts a failed publish that was their own fault against events still held under `claimant`: they
 * are tried again in `retryInMs`, or parked once they reached `maxAttempts`.
 */
export async function chargeOutboxRows(
  pool: Pool,
  ids: readonly string[],
  claimant: string,
  failure: { reason: string; retryInMs: number; maxAttempts: number },
): Promise<ChargedRow[]> {
  const { rows } = await pool.query<ChargedRow>(CHARGE_SQL, [ids, claimant, failure.reason, failure.retryInMs, failure.maxAttempts]);
  return rows;
}

export interface OutboxBacklog {
  /** Events not yet published, parked ones left out. */
  pending: number;
  /** Age of the oldest of them by the database's clock; 0 when there is none. */
  oldestAgeSeconds: number;
  /** Events no relay takes until released: they failed too often for reasons of their own. */
  parked: number;
}

export async function readOutboxBacklog(pool: Pool): Promise<OutboxBacklog> {
  const { rows } = await pool.query<{ pending: string; parked: string; oldest: number | null }>(BACKLOG_SQL);
  return { pending: Number(rows[0]!.pending), parked: Number(rows[0]!.parked), oldestAgeSeconds: Math.max(0, rows[0]!.oldest ?? 0) };
}

export interface ParkedEvent {
  event_id: string;
  topic: string;
  attempts: number;
  last_error: string | null;
  parked_at: Date;
  created_at: Date;
}

/** Every parked event, oldest first. */
export async function listParkedOutboxRows(pool: Pool): Promise<ParkedEvent[]> {
  return (await pool.query<ParkedEvent>(PARKED_SQL)).rows;
}

/** Releases the parked events with these event ids, or every parked event when `eventIds` is null. */
export async function releaseParkedOutboxRows(
  pool: Pool,
  eventIds: readonly string[] | null,
): Promise<{ event_id: string; topic: string; last_error: string | null }[]> {
  return (await pool.query(RELEASE_PARKED_SQL, [eventIds])).rows;
}
