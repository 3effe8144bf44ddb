import { randomUUID } from 'node:crypto';
import { context, type Context, type Span } from '@opentelemetry/api';
import { encodeSumAccepted } from '../events/sum-accepted.ts';
import { deleteCapturedOutboxRows, outboxInsertSql } from '../outbox/outbox-store.ts';
import type { QueryConfig } from 'pg';
import type { Pool } from '../platform/db/pool.ts';
import { preparedStatement, withValues } from '../platform/db/prepared-statement.ts';
import { SummaError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import { endSpans, startOutboxWriteSpan } from '../platform/tracing/messaging-spans.ts';
import { traceHeadersOf } from '../platform/tracing/tracing.ts';
import { replayOf, type AddCommand, type AddResult, type RecordedRequest } from './add-command.ts';
import type { CalculatorMetrics } from './metrics.ts';
import { currentGenerationSql } from '../platform/db/period-partitions.ts';
import { CALCULATOR_SCHEMA, OUTBOX_TABLE, REQUESTS_TABLE } from './schema.ts';

const CURRENT_REQUESTS_GENERATION = currentGenerationSql(CALCULATOR_SCHEMA, 'requests');

/**
 * Records new requests together with their outbox events in one statement, so both commit or
 * neither does. Both tables are written by a single INSERT ... WITH, which PostgreSQL runs as one
 * transaction.
 *
 * The requests are kept for the idempotency window, in partitions by period (migration 005): an id
 * is looked up in every partition, and inserted into the current one, whose unique index settles two
 * writes of one id at the same time (ON CONFLICT waits for the other to commit). A write of an
 * earlier generation never overlaps one of the current (the switch waits for writes in flight).
 *
 * accepted_at and the outbox row's created_at are the database's now() (the transaction's start),
 * never this host's clock: `summa verify` and the outbox age gauge measure ages against the
 * database's clock, and a calculator host whose clock is off would make them wrong.
 */
const recordSql = (withHeaders: boolean) => `
WITH input AS (
  SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::uuid[], $6::text[]${withHeaders ? ', $8::jsonb[]' : ''})
    AS t(request_id, num1, num2, sum, event_id, payload${withHeaders ? ', headers' : ''})
), earlier AS (
  SELECT request_id FROM ${REQUESTS_TABLE} WHERE request_id = ANY($1::text[])
), accepted AS (
  INSERT INTO ${REQUESTS_TABLE} (request_id, num1, num2, sum, event_id, accepted_at, generation)
  SELECT request_id, num1, num2, sum, event_id, now(), ${CURRENT_REQUESTS_GENERATION} FROM input
  WHERE NOT EXISTS (SELECT 1 FROM earlier WHERE earlier.request_id = input.request_id)
  ON CONFLICT (request_id, generation) DO NOTHING
  RETURNING request_id, event_id
)
${outboxInsertSql(`SELECT accepted.event_id, $7, input.request_id, input.payload, ${withHeaders ? 'input.headers' : `'{}'::jsonb`}, now()
FROM accepted JOIN input USING (request_id)`)}`;
const RECORD = preparedStatement('summa_calculator_record', recordSql(false));
/** Used only for batches with a traced request: stores each request's traceparent in its outbox row. */
const RECORD_TRACED = preparedStatement('summa_calculator_record_traced', recordSql(true));

// In generation order: were an id ever in two (not within one window), the latest answers.
const RECORDED = preparedStatement(
  'summa_calculator_recorded',
  `SELECT request_id, num1, num2, sum FROM ${REQUESTS_TABLE} WHERE request_id = ANY($1::text[]) ORDER BY generation`,
);

export interface SumRecorderOptions {
  topic: string;
  /** Most requests written by one statement. */
  maxBatchSize: number;
  /** Statements in flight at once; further requests queue and go in the next batch (group commit). */
  maxConcurrentWrites: number;
  /** Requests waiting beyond this are refused with RESOURCE_EXHAUSTED rather than queued without bound. */
  maxQueued: number;
  /**
   * Change data capture reads the outbox off the write-ahead log (RELAY_MODE=debezium): each
   * statement's outbox rows are deleted in its own transaction, so the table stays empty. Costs a
   * transaction of three more round trips per statement (BEGIN, DELETE, COMMIT). Default false.
   */
  deleteOutboxRows?: boolean;
}

interface Pending {
  command: AddCommand;
  /** The caller's trace context (its server span), parent of the outbox write span. */
  trace: Context;
  resolve: (result: AddResult) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for Add requests. Requests that arrive while a write is in flight are gathered
 * and written together by the next statement, so under load one commit (one WAL flush) serves
 * many requests, and a lone request is still written at once.
 */
export class SumRecorder {
  private readonly queue: Pending[] = [];
  private writesInFlight = 0;
  private writesScheduled = false;
  private idle: (() => void) | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly options: SumRecorderOptions,
    private readonly logger: Logger,
    private readonly metrics: CalculatorMetrics,
    /**
     * Called after each statement that committed new outbox events, outside its transaction: wakes
     * the relays (OutboxNotifier). Returns at once; answers never wait for it.
     */
    private readonly outboxCommitted: () => void,
  ) {}

  record(command: AddCommand): Promise<AddResult> {
    if (this.queue.length >= this.options.maxQueued) {
      return Promise.reject(new SummaError('RESOURCE_EXHAUSTED', 'too many requests waiting to be recorded; retry later'));
    }
    return new Promise<AddResult>((resolve, reject) => {
      this.queue.push({ command, trace: context.active(), resolve, reject });
      this.scheduleWrites();
    });
  }

  /**
   * Starts writes once the requests read in this turn of the event loop are all queued, so that
   * they share one statement (and one WAL flush) instead of each taking a write of its own.
   */
  private scheduleWrites(): void {
    if (this.writesScheduled) return;
    this.writesScheduled = true;
    setImmediate(() => {
      this.writesScheduled = false;
      this.startWrites();
      this.notifyIfIdle(); // earlier writes may have taken the whole queue meanwhile
    });
  }

  /** Resolves once every request accepted so far has been answered. */
  drain(): Promise<void> {
    if (this.queue.length === 0 && this.writesInFlight === 0 && !this.writesScheduled) return Promise.resolve();
    return new Promise((resolve) => {
      this.idle = resolve;
    });
  }

  private startWrites(): void {
    while (this.writesInFlight < this.options.maxConcurrentWrites && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.maxBatchSize);
      this.writesInFlight += 1;
      void this.write(batch).finally(() => {
        this.writesInFlight -= 1;
        this.startWrites();
        this.notifyIfIdle();
      });
    }
  }

  private notifyIfIdle(): void {
    if (this.queue.length === 0 && this.writesInFlight === 0 && !this.writesScheduled) this.idle?.();
  }

  private async write(batch: Pending[]): Promise<void> {
    this.metrics.batchSize.observe(batch.length);
    // Requests that repeat an id within the batch wait for the first one's outcome.
    const byRequestId = new Map<string, Pending[]>();
    for (const pending of batch) {
      const group = byRequestId.get(pending.command.requestId);
      if (group) group.push(pending);
      else byRequestId.set(pending.command.requestId, [pending]);
    }
    // A fixed order of keys keeps two concurrent statements from locking the same ids in
    // opposite orders, which would deadlock.
    const leaders = [...byRequestId.keys()].sort().map((id) => byRequestId.get(id)![0]!);
    const outcomes = await this.writeLeaders(leaders, batch.length);
    for (const [requestId, outcome] of outcomes) this.settle(byRequestId.get(requestId)!, outcome);
  }

  /** Answers every request under one id; each gets its own answer (replay, conflict or failure). */
  private settle(group: Pending[], outcome: Outcome): void {
    group.forEach((pending, index) => {
      if (outcome.kind === 'failed') {
        pending.reject(outcome.error);
        return;
      }
      if (index === 0 && outcome.isNew) {
        this.metrics.requests.inc({ outcome: 'accepted' });
        pending.resolve({ requestId: pending.command.requestId, sum: outcome.request.sum, replayed: false });
        return;
      }
      try {
        const replay = replayOf(pending.command, outcome.request);
        this.metrics.requests.inc({ outcome: 'replayed' });
        pending.resolve(replay);
      } catch (error) {
        this.metrics.requests.inc({ outcome: 'conflict' });
        pending.reject(error);
      }
    });
  }

  /**
   * Writes one command per request id and says what became of each. A statement the database
   * refuses for the data of one row is split in halves until that row is alone, so one bad request
   * never fails the requests written beside it; one that fails for the database's sake (connection
   * lost, timed out) leaves every request of it with an unknown outcome.
   */
  private async writeLeaders(leaders: Pending[], batchSize: number): Promise<Map<string, Outcome>> {
    const spans = startOutboxWriteSpans(leaders, batchSize);
    let accepted: Set<string>;
    try {
      accepted = await this.insert(leaders.map((pending) => pending.command), spans);
      endSpans(spans);
      if (accepted.size > 0) this.outboxCommitted();
    } catch (error) {
      endSpans(spans, error);
      if (isDataError(error) && leaders.length > 1) {
        const half = Math.ceil(leaders.length / 2);
        const first = await this.writeLeaders(leaders.slice(0, half), batchSize);
        const second = await this.writeLeaders(leaders.slice(half), batchSize);
        return new Map([...first, ...second]);
      }
      this.logger.error({ err: error, batchSize, requests: leaders.length }, 'recording sums failed');
      return new Map(leaders.map(({ command }) => [command.requestId, { kind: 'failed', error: writeFailure(command.requestId, error) }]));
    }
    const outcomes = new Map<string, Outcome>();
    const repeated: string[] = [];
    for (const { command } of leaders) {
      if (accepted.has(command.requestId)) outcomes.set(command.requestId, { kind: 'recorded', request: command, isNew: true });
      else repeated.push(command.requestId);
    }
    if (repeated.length > 0) {
      for (const [requestId, outcome] of await this.readRecorded(repeated)) outcomes.set(requestId, outcome);
    }
    return outcomes;
  }

  /** The one statement that records requests and their outbox events; returns the ids it accepted. */
  private async insert(commands: AddCommand[], spans: (Span | undefined)[] | undefined): Promise<Set<string>> {
    // The event's own timestamp, from this host's clock, serves only the end-to-end latency metric;
    // the rows get the database's now() (see recordSql).
    const acceptedAt = new Date();
    const eventIds = commands.map(() => randomUUID());
    const payloads = commands.map((command, index) =>
      encodeSumAccepted({ ...command, eventId: eventIds[index]!, acceptedAt }),
    );
    const parameters: unknown[] = [
      commands.map((c) => c.requestId),
      commands.map((c) => c.num1.toString()),
      commands.map((c) => c.num2.toString()),
      commands.map((c) => c.sum.toString()),
      eventIds,
      payloads,
      this.options.topic,
    ];
    if (spans) parameters.push(commands.map((_, index) => JSON.stringify(spans[index] ? traceHeadersOf(spans[index]) : {})));
    const statement = withValues(spans ? RECORD_TRACED : RECORD, parameters);
    const rows = this.options.deleteOutboxRows ? await this.recordAndDelete(statement) : (await this.pool.query<RecordedRow>(statement)).rows;
    // Matched by the keys the database returns: what it stored, not what was sent.
    return new Set(rows.map((row) => row.message_key));
  }

  /** The record statement and the delete of its outbox rows, in one transaction. */
  private async recordAndDelete(statement: QueryConfig): Promise<RecordedRow[]> {
    const client = await this.pool.connect();
    let failed: unknown;
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<RecordedRow>(statement);
      if (rows.length > 0) await deleteCapturedOutboxRows(client, rows.map((row) => row.id));
      await client.query('COMMIT');
      return rows;
    } catch (error) {
      failed = error;
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      // A connection whose statement failed midway (timed out, lost) may be in any state: drop it.
      client.release(failed instanceof Error && !isDataError(failed) ? failed : undefined);
    }
  }

  /**
   * What the ids recorded earlier were recorded as. A separate statement: it sees rows that
   * concurrent writers committed while ours waited. An id it cannot answer for has an unknown
   * outcome, on its own.
   */
  private async readRecorded(requestIds: string[]): Promise<Map<string, Outcome>> {
    const outcomes = new Map<string, Outcome>();
    try {
      const { rows } = await this.pool.query<{ request_id: string; num1: string; num2: string; sum: string }>(withValues(RECORDED, [requestIds]));
      for (const row of rows) {
        const request = { num1: BigInt(row.num1), num2: BigInt(row.num2), sum: BigInt(row.sum) };
        outcomes.set(row.request_id, { kind: 'recorded', request, isNew: false });
      }
    } catch (error) {
      this.logger.error({ err: error, requests: requestIds.length }, 'reading recorded requests failed');
      for (const requestId of requestIds) outcomes.set(requestId, { kind: 'failed', error: unknownOutcome(requestId, error) });
      return outcomes;
    }
    for (const requestId of requestIds) {
      if (outcomes.has(requestId)) continue;
      const error = new Error(`request ${JSON.stringify(requestId)} conflicted but is not recorded`);
      this.logger.error({ err: error }, 'a recorded request could not be read back');
      outcomes.set(requestId, { kind: 'failed', error: unknownOutcome(requestId, error) });
    }
    return outcomes;
  }
}

/** What the record statement returns of each outbox row it wrote. */
interface RecordedRow {
  id: string;
  message_key: string;
}

type Outcome = { kind: 'recorded'; request: RecordedRequest; isNew: boolean } | { kind: 'failed'; error: SummaError };

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint): this data, not the database. */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}

function writeFailure(requestId: string, error: unknown): SummaError {
  if (isDataError(error)) {
    return new SummaError('INVALID_ARGUMENT', `request ${JSON.stringify(requestId)} was refused by the database and not recorded`, { cause: error, requestId });
  }
  return unknownOutcome(requestId, error);
}

function unknownOutcome(requestId: string, error: unknown): SummaError {
  return new SummaError(
    'UNAVAILABLE',
    `the database is unavailable and whether request ${JSON.stringify(requestId)} was recorded is unknown; retry with the same request id`,
    { cause: error, requestId },
  );
}

/**
 * One span per new request whose caller is traced, child of the caller's span; undefined when no
 * request of the batch is traced, which keeps untraced batches on the plain statement.
 */
function startOutboxWriteSpans(leaders: Pending[], batchSize: number): (Span | undefined)[] | undefined {
  const spans = leaders.map((pending) => startOutboxWriteSpan({ table: OUTBOX_TABLE, batchSize }, pending.trace));
  return spans.some((span) => span !== undefined) ? spans : undefined;
}
