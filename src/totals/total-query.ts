import { invalidArgument } from '../platform/errors.ts';
import { parseRequestId } from '../platform/request-id.ts';

/** Long enough for a sum to go through the relay and the consumer under normal load. */
export const DEFAULT_AFTER_TIMEOUT_MS = 5_000;
/** Beyond this a caller holds a connection (and nginx's proxy_read_timeout) for too long. */
export const MAX_AFTER_TIMEOUT_MS = 30_000;

/** What a GET /total asks for. */
export interface TotalQuery {
  /**
   * `eventual` (the default): read where reads are served (the replica when there is one).
   * `strong`: read the primary, which has every applied sum.
   */
  consistency: 'eventual' | 'strong';
  /** Answer only once the sum of this request id is in the total. */
  after: { requestId: string; timeoutMs: number } | undefined;
}

const PARAMETERS = new Set(['consistency', 'after', 'timeoutMs']);

/**
 * The query string of GET /total and /summation. Unknown or repeated parameters are refused rather
 * than ignored: a misspelt `?consistancy=strong` would otherwise quietly read the replica.
 */
export function parseTotalQuery(query: Record<string, unknown>): TotalQuery {
  for (const [name, value] of Object.entries(query)) {
    if (!PARAMETERS.has(name)) throw invalidArgument(`unknown query parameter ${JSON.stringify(name)}; GET /total takes consistency, after and timeoutMs`);
    if (typeof value !== 'string') throw invalidArgument(`query parameter ${name} must be given once`);
  }
  const { consistency = 'eventual', after, timeoutMs } = query as Record<string, string | undefined>;
  if (consistency !== 'eventual' && consistency !== 'strong') {
    throw invalidArgument(`consistency must be "eventual" or "strong", got ${JSON.stringify(consistency)}`);
  }
  if (after === undefined) {
    if (timeoutMs !== undefined) throw invalidArgument('timeoutMs applies only with after=<requestId>');
    return { consistency, after: undefined };
  }
  return { consistency, after: { requestId: parseRequestId(after), timeoutMs: parseTimeoutMs(timeoutMs) } };
}

function parseTimeoutMs(value: string | undefined): number {
  if (value === undefined) return DEFAULT_AFTER_TIMEOUT_MS;
  if (!/^\d{1,6}$/.test(value) || Number(value) > MAX_AFTER_TIMEOUT_MS) {
    throw invalidArgument(`timeoutMs must be a whole number of milliseconds from 0 to ${MAX_AFTER_TIMEOUT_MS}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}
