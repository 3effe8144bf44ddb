// What the operator's commands (logs, stop, load, watch) share: their exit codes, how a bad command
// line and a service that is down are told (one line each), and option parsing.
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** The exit codes of summa logs, stop, load and watch (README.md, "CLI"). */
export const OPS_EXIT = { ok: 0, failed: 1, usage: 2, notRunning: 3, serviceDown: 4 } as const;

/** A bad command line: told in one line, with the command's usage unless it would hide that line; exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly showUsage = true,
  ) {
    super(message);
  }
}

/** Nothing runs from the data folder (no run state, or its launcher is gone): exit code 3. */
export class NotRunningError extends Error {}

/** A service did not answer: which one, where, and why, in one line; exit code 4. */
export class ServiceDownError extends Error {
  constructor(
    readonly service: string,
    readonly address: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`the ${service} is down at ${address} (${reason})`, options);
  }
}

/** A network failure in a few words: "connection refused" rather than a stack of causes. */
export function networkReason(error: unknown): string {
  const failure = ((error as Error)?.cause ?? error) as NodeJS.ErrnoException & { details?: string };
  switch (failure?.code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
      return 'connection reset';
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'no answer in time';
    default:
      return failure?.details || failure?.message || String(failure);
  }
}

/** Every command takes -h/--help; callers list it among their options. */
export const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;

export function parseCommandArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** A number option within [min, max]; `integer` refuses fractions. */
export function numberOption(name: string, value: string | undefined, fallback: number, limits: { min: number; max: number; integer?: boolean }): number {
  if (value === undefined) return fallback;
  const number = Number(value.trim().replace(/%$/, ''));
  if (value.trim() === '' || !Number.isFinite(number) || (limits.integer && !Number.isInteger(number)) || number < limits.min || number > limits.max) {
    throw new UsageError(`${name} must be ${limits.integer ? 'a whole number' : 'a number'} from ${limits.min} to ${limits.max}, not ${JSON.stringify(value)}`);
  }
  return number;
}

/**
 * Runs a command's body and turns what it throws into one line on stderr and an exit code, so
 * that no command shows a stack trace for an expected failure.
 */
export async function runOpsCommand(name: string, usage: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.showUsage ? `summa ${name}: ${error.message}\n\n${usage}` : `summa ${name}: ${error.message}`);
      return OPS_EXIT.usage;
    }
    console.error(`summa ${name}: ${(error as Error).message}`);
    if (error instanceof NotRunningError) return OPS_EXIT.notRunning;
    if (error instanceof ServiceDownError) return OPS_EXIT.serviceDown;
    return OPS_EXIT.failed;
  }
}
