import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, type Env } from '../platform/config.ts';
import { createPool, type Pool } from '../platform/db/pool.ts';
import { decodeSumAccepted } from '../events/sum-accepted.ts';
import { isFailure, replayRejectedRecords, type ReplayOutcome } from '../totals/dead-letter-replay.ts';
import { formatRecordId, listRejectedRecords, parseRecordId, type RecordId, type RejectedRecordRow } from '../totals/rejected-records.ts';
import { TOO_OLD_REASON } from '../totals/totals-store.ts';
import { previewBytes, previewText, safeText } from './payload-preview.ts';
import { verifyDatabaseUrls } from './verify-command.ts';

export const DLQ_USAGE = `usage:
  summa dlq list [--all] [--limit <n>] [--json]
      the parked records, newest first (the newest 20 unless --limit): where each one was
      consumed (<topic>/<partition>/<offset>), when and why it was rejected, its key and a
      preview of its payload, under a count. --all lists the replayed ones too, marked so.
      A valid event quarantined as older than the dedup window is marked "quarantined: too
      old", with its event id and request id.
  summa dlq replay <topic>/<partition>/<offset>... [--dry-run] [--older-than-window] [--json]
  summa dlq replay --all [--dry-run] [--older-than-window] [--json]
      reads each chosen record (--all: every parked one) as an event and applies it the way the
      consumer does, deduplicated by event id, marking it replayed in the same transaction: an
      event is never counted twice, however often it is replayed. A record that still is not a
      valid event stays parked and the reason is printed. An event older than the dedup window
      stays parked too (status too-old): it may have been applied in a period whose applied
      events are dropped, where no dedup can see it. --older-than-window applies it anyway:
      only once you checked it was not applied (summa verify, docs/retention.md). --dry-run
      changes nothing and says what a replay would do.

examples:
  summa dlq list
  summa dlq list --all --limit 100 --json
  summa dlq replay summa.sums.v1/3/1842 --dry-run
  summa dlq replay summa.sums.v1/3/1842 summa.sums.v1/0/77
  summa dlq replay --all
  summa dlq replay summa.sums.v1/0/912 --older-than-window --dry-run

exit codes:
  0  listed; or every chosen record replayed now or before
  1  a chosen record still is not a valid event or is too old (it stays parked), or does not exist
  2  a bad command line or database URL
  3  the database is unreachable, failed, or lacks the totals schema

environment:
  DATABASE_URL         the totals database (default: the database npm start runs)
  TOTALS_DATABASE_URL  overrides DATABASE_URL`;

const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 100_000;

export const DLQ_EXIT = { ok: 0, notReplayed: 1, usage: 2, database: 3 } as const;

/** A bad command line: told in one line, exit code 2. */
class UsageError extends Error {}

/** The database could not be used: told in one line, exit code 3. */
class DatabaseError extends Error {}

const COMMANDS = {
  list: {
    json: { type: 'boolean' },
    all: { type: 'boolean' },
    limit: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  replay: {
    json: { type: 'boolean' },
    all: { type: 'boolean' },
    'dry-run': { type: 'boolean' },
    'older-than-window': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
} as const satisfies Record<string, ParseArgsConfig['options']>;

type DlqCommand =
  | { kind: 'help' }
  | { kind: 'list'; json: boolean; includeReplayed: boolean; limit: number }
  | { kind: 'replay'; json: boolean; ids: RecordId[] | 'all'; dryRun: boolean; olderThanWindow: boolean };

/** `summa dlq …` with its arguments (after `dlq`): prints what it did and returns the exit code. */
export async function runDlqCommand(argv: string[], env: Env): Promise<number> {
  let command: DlqCommand;
  let url: string;
  try {
    command = parseDlqCommandLine(argv);
    if (command.kind === 'help') {
      console.log(DLQ_USAGE);
      return DLQ_EXIT.ok;
    }
    url = verifyDatabaseUrls(env).totals;
  } catch (error) {
    if (!(error instanceof UsageError || error instanceof ConfigError)) throw error;
    console.error(`summa dlq: ${error.message}\n(summa dlq --help shows how it is used)`);
    return DLQ_EXIT.usage;
  }

  const pool = createPool(url, { applicationName: 'summa-dlq', max: 1, connectTimeoutMs: 5_000 });
  try {
    await connect(pool, url);
    return command.kind === 'list' ? await list(pool, command) : await replay(pool, command);
  } catch (error) {
    console.error(`summa: ${describeDatabaseFailure(error, url)}`);
    return DLQ_EXIT.database;
  } finally {
    await pool.end().catch(() => {});
  }
}

function parseDlqCommandLine(argv: string[]): DlqCommand {
  const [name, ...rest] = argv;
  if (name === undefined) throw new UsageError('say list or replay');
  if (name === '--help' || name === '-h' || name === 'help') return { kind: 'help' };
  if (name !== 'list' && name !== 'replay') throw new UsageError(`unknown command ${JSON.stringify(name)}: say list or replay`);
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: COMMANDS[name], allowPositionals: name === 'replay', strict: true });
  } catch (error) {
    throw new UsageError(`${name}: ${(error as Error).message}`);
  }
  const values = parsed.values as { json?: boolean; all?: boolean; limit?: string; 'dry-run'?: boolean; 'older-than-window'?: boolean; help?: boolean };
  if (values.help) return { kind: 'help' };
  const json = values.json ?? false;
  if (name === 'list') {
    return { kind: 'list', json, includeReplayed: values.all ?? false, limit: parseLimit(values.limit) };
  }
  if (values.all && parsed.positionals.length > 0) throw new UsageError('replay: give record ids or --all, not both');
  if (!values.all && parsed.positionals.length === 0) throw new UsageError('replay: say which records (<topic>/<partition>/<offset>...) or --all');
  const ids = values.all
    ? 'all'
    : parsed.positionals.map((text) => {
        const id = parseRecordId(text);
        if (!id) throw new UsageError(`replay: ${JSON.stringify(text)} is not a record id: <topic>/<partition>/<offset>, as list prints it`);
        return id;
      });
  return { kind: 'replay', json, ids, dryRun: values['dry-run'] ?? false, olderThanWindow: values['older-than-window'] ?? false };
}

function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_LIMIT;
  const limit = /^\d{1,6}$/.test(raw) ? Number(raw) : 0;
  if (limit < 1 || limit > MAX_LIMIT) throw new UsageError(`list: --limit must be a whole number from 1 to ${MAX_LIMIT}, got ${JSON.stringify(raw)}`);
  return limit;
}

/** Where the database is, for messages: never the password. */
function databaseLocation(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname || 'localhost'}:${parsed.port || 5432}${parsed.pathname}`;
  } catch {
    return 'the configured database';
  }
}

async function connect(pool: Pool, url: string): Promise<void> {
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    throw new DatabaseError(`cannot reach the database at ${databaseLocation(url)}: ${errorText(error)}`);
  }
}

function errorText(error: unknown): string {
  // A host name with several addresses fails as an AggregateError with an empty message.
  if (error instanceof AggregateError && error.errors.length > 0) return [...new Set(error.errors.map(errorText))].join('; ');
  const { message, code } = error as { message?: string; code?: string };
  return (message || code || String(error)).split('\n')[0]!;
}

function describeDatabaseFailure(error: unknown, url: string): string {
  if (error instanceof DatabaseError) return error.message;
  const code = (error as { code?: string }).code;
  // undefined_table, undefined_column: a database the totals service has not migrated (yet).
  if (code === '42P01' || code === '42703') {
    return `the database at ${databaseLocation(url)} lacks the totals schema or its latest migration (${errorText(error)}): start the totals service once, it applies them`;
  }
  return `the database at ${databaseLocation(url)} failed: ${errorText(error)}`;
}

const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;

async function list(pool: Pool, command: Extract<DlqCommand, { kind: 'list' }>): Promise<number> {
  const listing = await listRejectedRecords(pool, { limit: command.limit, includeReplayed: command.includeReplayed });
  const matching = command.includeReplayed ? listing.parked + listing.replayed : listing.parked;
  if (command.json) {
    console.log(
      JSON.stringify(
        {
          parked: listing.parked,
          replayed: listing.replayed,
          parkedTooOld: listing.parkedTooOld,
          shown: listing.records.length,
          records: listing.records.map(recordJson),
        },
        null,
        2,
      ),
    );
    return DLQ_EXIT.ok;
  }
  let heading = command.includeReplayed
    ? `${plural(matching, 'rejected record')} (${listing.parked} parked, ${listing.replayed} replayed)`
    : plural(listing.parked, 'parked record');
  if (listing.parkedTooOld > 0) heading += ` (${listing.parkedTooOld} quarantined as older than the dedup window)`;
  if (listing.records.length < matching) heading += `, newest ${listing.records.length} shown`;
  if (!command.includeReplayed && listing.replayed > 0) heading += ` (${listing.replayed} replayed, not shown: --all lists them)`;
  const blocks = listing.records.map((record) =>
    [
      `${formatRecordId(record)}  rejected ${record.rejectedAt.toISOString()}  ${
        record.replayedAt
          ? `replayed ${record.replayedAt.toISOString()}${record.replayedEventId ? ` (event ${record.replayedEventId})` : ''}`
          : record.quarantined
            ? 'quarantined: too old'
            : 'parked'
      }`,
      ...(record.quarantined ? [`  event:   ${record.eventId}`, `  request: ${previewText(requestIdOf(record))}`] : []),
      `  reason:  ${safeText(record.reason)}`,
      `  key:     ${previewText(record.key)}`,
      `  payload: ${previewBytes(record.payload)}`,
    ].join('\n'),
  );
  console.log([heading, ...blocks].join('\n\n'));
  return DLQ_EXIT.ok;
}

/** The request of a quarantined event: from its payload, else the record's key (the relay keys records by request id). */
function requestIdOf(record: RejectedRecordRow): string | null {
  try {
    return decodeSumAccepted(record.payload ?? Buffer.alloc(0)).requestId;
  } catch {
    return record.key;
  }
}

function recordJson(record: RejectedRecordRow) {
  return {
    id: formatRecordId(record),
    topic: record.topic,
    partition: record.partition,
    // A string: offsets are 64-bit.
    offset: record.offset.toString(),
    rejectedAt: record.rejectedAt.toISOString(),
    reason: record.reason,
    key: record.key,
    payloadBase64: record.payload?.toString('base64') ?? null,
    payloadPreview: previewBytes(record.payload),
    replayedAt: record.replayedAt?.toISOString() ?? null,
    replayedEventId: record.replayedEventId,
    quarantined: record.quarantined,
    eventId: record.eventId,
    requestId: record.quarantined ? requestIdOf(record) : null,
  };
}

async function replay(pool: Pool, command: Extract<DlqCommand, { kind: 'replay' }>): Promise<number> {
  const outcomes = await replayRejectedRecords(pool, command.ids, { dryRun: command.dryRun, olderThanWindow: command.olderThanWindow });
  const count = (status: ReplayOutcome['status']) => outcomes.filter((outcome) => outcome.status === status).length;
  const summary = {
    chosen: outcomes.length,
    added: count('added'),
    alreadyApplied: count('already-applied'),
    alreadyReplayed: count('already-replayed'),
    invalid: count('invalid') + count('too-old'),
    tooOld: count('too-old'),
    notFound: count('not-found'),
  };
  const code = outcomes.some(isFailure) ? DLQ_EXIT.notReplayed : DLQ_EXIT.ok;
  if (command.json) {
    console.log(JSON.stringify({ dryRun: command.dryRun, olderThanWindow: command.olderThanWindow, summary, outcomes }, null, 2));
    return code;
  }
  if (outcomes.length === 0) {
    console.log('no parked records to replay');
    return code;
  }
  for (const outcome of outcomes) console.log(`${outcome.id}  ${describeOutcome(outcome, command.dryRun)}`);
  console.log(summaryLine(summary, command.dryRun));
  return code;
}

function describeOutcome(outcome: ReplayOutcome, dryRun: boolean): string {
  switch (outcome.status) {
    case 'added': {
      const what = `${outcome.sum} (request ${safeText(outcome.requestId)}, event ${outcome.eventId})${outcome.olderThanWindow ? ', older than the dedup window' : ''}`;
      return dryRun ? `would add ${what}` : `replayed: added ${what}`;
    }
    case 'already-applied':
      return dryRun
        ? `would be marked replayed: event ${outcome.eventId} is already applied, nothing would be added`
        : `replayed: event ${outcome.eventId} was already applied, nothing added`;
    case 'already-replayed':
      return `already replayed at ${outcome.replayedAt}, nothing to do`;
    case 'invalid':
      return `${dryRun ? 'would stay parked' : 'still parked'}: ${safeText(outcome.reason)}`;
    case 'not-found':
      return 'not found: no such rejected record';
    case 'too-old':
      return (
        `${dryRun ? 'would stay parked' : 'still parked'}: event ${outcome.eventId} (request ${safeText(outcome.requestId)}, sum ${outcome.sum}) ` +
        `is ${TOO_OLD_REASON} (horizon ${outcome.horizon}): it may have been applied in a period already dropped; ` +
        'once you checked it was not, replay it with --older-than-window'
      );
  }
}

function summaryLine(
  summary: { chosen: number; added: number; alreadyApplied: number; alreadyReplayed: number; invalid: number; tooOld: number; notFound: number },
  dryRun: boolean,
): string {
  const replayed = summary.added + summary.alreadyApplied;
  const rest = [
    summary.invalid > 0 ? `${summary.invalid} ${dryRun ? 'would stay' : 'still'} parked${summary.tooOld > 0 ? ` (${summary.tooOld} too old)` : ''}` : '',
    summary.notFound > 0 ? `${summary.notFound} not found` : '',
    summary.alreadyReplayed > 0 ? `${summary.alreadyReplayed} replayed before` : '',
  ].filter(Boolean);
  const line = dryRun
    ? `dry run, nothing changed: would replay ${replayed} of ${summary.chosen}: ${summary.added} to add to the total, ${summary.alreadyApplied} already applied`
    : `replayed ${replayed} of ${summary.chosen}: ${summary.added} added to the total, ${summary.alreadyApplied} already applied`;
  return rest.length > 0 ? `${line}; ${rest.join(', ')}` : line;
}
