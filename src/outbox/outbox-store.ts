import type { Pool, PoolClient } from '../platform/db/pool.ts';
import { OUTBOX_TABLE } from '../calculator/schema.ts';

// Every statement on the outbox table lives here: the insert the calculator runs in the same
// statement as its request rows, and the relay's claim, delete and backlog.

/** One event waiting in the outbox. */
export interface OutboxRow {
  id: string;
  event_id: string;
  topic: string;
  message_key: string;
  payload: string;
  headers: Record<string, string>;
  created_at: Date;
}

/**
 * The INSERT that puts events into the outbox, for use as the last part of a statement whose
 * earlier parts choose the rows: `select` yields (event_id, topic, message_key, payload, headers,
 * created_at) in that order. Returns the message key (the request id) of each row written.
 */
export function outboxInsertSql(select: string): string {
  return `INSERT INTO ${OUTBOX_TABLE} (event_id, topic, message_key, payload, headers, created_at)
${select}
RETURNING message_key`;
}

/**
 * Claims the oldest events no other relay holds. SKIP LOCKED lets several relays work side by side
 * without waiting on each other, and since a row leaves the table only after it is published, a
 * transaction that commits late is picked up by a later claim rather than skipped by a cursor.
 */
const CLAIM_SQL = `
SELECT id, event_id, topic, message_key, payload, headers, created_at
FROM ${OUTBOX_TABLE}
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED`;

const DELETE_SQL = `DELETE FROM ${OUTBOX_TABLE} WHERE id = ANY($1::bigint[])`;

const BACKLOG_SQL = `SELECT count(*) AS pending, extract(epoch FROM now() - min(created_at))::float8 AS oldest FROM ${OUTBOX_TABLE}`;

/** Locks up to `limit` of the oldest unclaimed events for the transaction `client` has open. */
export async function claimOutboxRows(client: PoolClient, limit: number): Promise<OutboxRow[]> {
  const { rows } = await client.query<OutboxRow>(CLAIM_SQL, [limit]);
  return rows;
}

/** Removes published events. */
export async function deleteOutboxRows(client: PoolClient, rows: readonly OutboxRow[]): Promise<void> {
  await client.query(DELETE_SQL, [rows.map((row) => row.id)]);
}

export interface OutboxBacklog {
  /** Events not yet published. */
  pending: number;
  /** Age of the oldest of them by the database's clock; 0 when the outbox is empty. */
  oldestAgeSeconds: number;
}

export async function readOutboxBacklog(pool: Pool): Promise<OutboxBacklog> {
  const { rows } = await pool.query<{ pending: string; oldest: number | null }>(BACKLOG_SQL);
  return { pending: Number(rows[0]!.pending), oldestAgeSeconds: Math.max(0, rows[0]!.oldest ?? 0) };
}
