// Where one request is on its way to the total, read from the one database the calculator and the
// totals service share under `npm start`: its idempotency record (accepted), its outbox row (waiting
// for a relay), and its applied event (with the partition and offset it was consumed at). The outbox
// row is deleted once Kafka has the event, so between the two the request is "published": Kafka
// holds it, and where is known only once it is applied.
import { OUTBOX_TABLE, REQUESTS_TABLE } from '../../calculator/schema.ts';
import type { Pool } from '../../platform/db/pool.ts';

export type RequestStage = 'unknown' | 'accepted' | 'in-outbox' | 'published' | 'applied';

export interface RequestTrace {
  requestId: string;
  stage: RequestStage;
  accepted: { sum: string; num1: string; num2: string; eventId: string; acceptedAt: string } | null;
  outbox: { attempts: number; lastError: string | null; parked: boolean; createdAt: string } | null;
  applied: { partition: number; offset: string; appliedAt: string; eventId: string } | null;
  /** Why a part could not be read (the calculator's schema in another database, say). */
  problems: string[];
}

export async function traceRequest(pool: Pool, requestId: string): Promise<RequestTrace> {
  const problems: string[] = [];
  const failed = (what: string) => (error: Error) => {
    problems.push(`${what}: ${error.message}`);
    return null;
  };
  const [accepted, applied] = await Promise.all([
    pool
      .query<{ sum: string; num1: string; num2: string; event_id: string; accepted_at: Date }>(
        `SELECT sum::text, num1::text, num2::text, event_id, accepted_at FROM ${REQUESTS_TABLE} WHERE request_id = $1`,
        [requestId],
      )
      .then((result) => result.rows[0] ?? null, failed(REQUESTS_TABLE)),
    pool
      .query<{ kafka_partition: number; kafka_offset: string; applied_at: Date; event_id: string }>(
        'SELECT kafka_partition, kafka_offset::text, applied_at, event_id FROM totals.applied_events WHERE request_id = $1 ORDER BY applied_at LIMIT 1',
        [requestId],
      )
      .then((result) => result.rows[0] ?? null, failed('totals.applied_events')),
  ]);
  const outbox = accepted
    ? await pool
        .query<{ attempts: number; last_error: string | null; parked_at: Date | null; created_at: Date }>(
          `SELECT attempts, last_error, parked_at, created_at FROM ${OUTBOX_TABLE} WHERE event_id = $1 LIMIT 1`,
          [accepted.event_id],
        )
        .then((result) => result.rows[0] ?? null, failed(OUTBOX_TABLE))
    : null;
  const stage: RequestStage = applied ? 'applied' : outbox ? 'in-outbox' : accepted ? (problems.length > 0 ? 'accepted' : 'published') : 'unknown';
  return {
    requestId,
    stage,
    accepted: accepted && {
      sum: accepted.sum,
      num1: accepted.num1,
      num2: accepted.num2,
      eventId: accepted.event_id,
      acceptedAt: accepted.accepted_at.toISOString(),
    },
    outbox: outbox && {
      attempts: outbox.attempts,
      lastError: outbox.last_error,
      parked: outbox.parked_at !== null,
      createdAt: outbox.created_at.toISOString(),
    },
    applied: applied && {
      partition: applied.kafka_partition,
      offset: applied.kafka_offset,
      appliedAt: applied.applied_at.toISOString(),
      eventId: applied.event_id,
    },
    problems,
  };
}
