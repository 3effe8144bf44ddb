import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { ConfigError, envDatabaseUrl } from '../platform/config.ts';
import { auditUntilQuiet, formatReport, inFlight, type InvariantReport } from './invariant-audit.ts';

export interface VerifyCommandOptions {
  /** Wait up to this long for the pipeline to go quiet; still in flight after it is a failure. */
  waitSeconds: number;
  /** Requests younger than this that are neither in the outbox nor applied count as in flight. */
  graceSeconds: number;
  /** The oldest outbox event may be this old (by the database's clock) before the relay counts as stuck. */
  maxOutboxAgeSeconds: number;
  /** How far past the other side's window an accepted_at may be and still count as beyond it. */
  edgeSeconds: number;
  /** Two events under one request id are a double count when accepted within this of each other. */
  idempotencyWindowSeconds: number;
  json: boolean;
}

type Env = Record<string, string | undefined>;

/** The two databases to audit: DATABASE_URL for both, unless CALCULATOR_/TOTALS_DATABASE_URL say otherwise. */
export function verifyDatabaseUrls(env: Env): { calculator: string; totals: string } {
  const shared = envDatabaseUrl(env);
  const pick = (name: string) => {
    const value = env[name]?.trim();
    if (!value) return shared;
    if (!/^postgres(ql)?:\/\//.test(value)) throw new ConfigError(`${name} must be a postgres:// connection URL`);
    return value;
  };
  return { calculator: pick('CALCULATOR_DATABASE_URL'), totals: pick('TOTALS_DATABASE_URL') };
}

export function parseSeconds(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d+(\.\d+)?$/.test(raw)) throw new ConfigError(`${name} must be a number of seconds, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

/**
 * `summa verify`'s exit codes, one per kind of outcome; when several apply, the lowest non-zero
 * wins. 2 is a bad command line, as for every summa command.
 */
export const VERIFY_EXIT = {
  /** The invariant holds (requests on their way are no failure, unless --wait was given). */
  ok: 0,
  /** The invariant is broken: a request lost or applied twice, an event without its request or unlike it, a wrong total. */
  broken: 1,
  usage: 2,
  /** The oldest outbox event is older than --max-outbox-age: events are not reaching the total. */
  stuck: 3,
  /** Requests were still in flight when --wait ran out. */
  notQuiet: 4,
  /** The audit could not run: a database unreachable, a schema missing, a statement failed. */
  failed: 5,
  /**
   * Events were quarantined as older than the dedup window and are still parked: each was applied
   * in a period already dropped, or never; `summa dlq` shows them and decides.
   */
  quarantined: 6,
} as const;

const EXIT_MEANING: Record<number, string> = {
  [VERIFY_EXIT.ok]: 'the invariant holds',
  [VERIFY_EXIT.broken]: 'the invariant is broken',
  [VERIFY_EXIT.stuck]: 'the relay is stuck',
  [VERIFY_EXIT.notQuiet]: 'still in flight after --wait',
  [VERIFY_EXIT.quarantined]: 'events quarantined as older than the dedup window: decide with summa dlq',
};

/** The exit code for a report (and whether requests were still in flight when --wait ran out). */
export function verifyExitCode(report: InvariantReport, stillInFlight: boolean): number {
  const { stuckOutbox, quarantined, ...invariant } = report.problems;
  if (Object.values(invariant).some((problem) => problem !== false && problem !== 0)) return VERIFY_EXIT.broken;
  if (stuckOutbox) return VERIFY_EXIT.stuck;
  if (stillInFlight) return VERIFY_EXIT.notQuiet;
  if (quarantined > 0) return VERIFY_EXIT.quarantined;
  return VERIFY_EXIT.ok;
}

/** `summa verify`: prints the audit and returns the exit code (VERIFY_EXIT). */
export async function runVerifyCommand(env: Env, options: VerifyCommandOptions): Promise<number> {
  const started = performance.now();
  const urls = verifyDatabaseUrls(env);
  // A connection holds each side's snapshot, another reads lost candidates again: three for one database.
  const pool = (connectionString: string) => {
    const created = new pg.Pool({ connectionString, application_name: 'summa-verify', max: 3 });
    // A lost connection surfaces as the error of the statement that needed it, not as a crash.
    created.on('error', () => {});
    created.on('connect', (client) => client.on('error', () => {}));
    return created;
  };
  const calculator = pool(urls.calculator);
  const totals = urls.totals === urls.calculator ? calculator : pool(urls.totals);
  try {
    let report: InvariantReport;
    try {
      report = await auditUntilQuiet({ calculator, totals }, options);
    } catch (error) {
      console.error(`summa verify: could not audit: ${(error as Error).message}`);
      return VERIFY_EXIT.failed;
    }
    const stillInFlight = options.waitSeconds > 0 && inFlight(report) > 0;
    const exitCode = verifyExitCode(report, stillInFlight);
    const verifySeconds = (performance.now() - started) / 1000;
    if (options.json) console.log(JSON.stringify({ ...report, stillInFlight, verifySeconds, exitCode }, null, 2));
    else {
      console.log(formatReport(report));
      if (stillInFlight) console.log(`FAILED: ${inFlight(report)} request(s) still in flight after waiting ${options.waitSeconds}s`);
      console.log(`ran in ${verifySeconds.toFixed(2)} s; exit code ${exitCode}: ${EXIT_MEANING[exitCode]}`);
    }
    return exitCode;
  } finally {
    await calculator.end().catch(() => {});
    if (totals !== calculator) await totals.end().catch(() => {});
  }
}

export type { InvariantReport };
