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

/** `summa verify`: prints the audit and returns the exit code (0 ok, 1 invariant broken or not quiet after --wait). */
export async function runVerifyCommand(env: Env, options: VerifyCommandOptions): Promise<number> {
  const urls = verifyDatabaseUrls(env);
  // Two connections each: one holds the snapshot, the other reads lost candidates again.
  const pool = (connectionString: string) => {
    const created = new pg.Pool({ connectionString, application_name: 'summa-verify', max: 2 });
    // A lost connection surfaces as the error of the statement that needed it, not as a crash.
    created.on('error', () => {});
    created.on('connect', (client) => client.on('error', () => {}));
    return created;
  };
  const calculator = pool(urls.calculator);
  const totals = urls.totals === urls.calculator ? calculator : pool(urls.totals);
  try {
    const report = await auditUntilQuiet({ calculator, totals }, options);
    const stillInFlight = options.waitSeconds > 0 && inFlight(report) > 0;
    if (options.json) console.log(JSON.stringify(report, null, 2));
    else {
      console.log(formatReport(report));
      if (stillInFlight) console.log(`FAILED: ${inFlight(report)} request(s) still in flight after waiting ${options.waitSeconds}s`);
    }
    return report.ok && !stillInFlight ? 0 : 1;
  } finally {
    await calculator.end().catch(() => {});
    if (totals !== calculator) await totals.end().catch(() => {});
  }
}

export type { InvariantReport };
