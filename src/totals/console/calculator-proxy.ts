// The console's Add form posts here, and the totals service forwards it to the calculator's HTTP API
// (TOTALS_CONSOLE_CALCULATOR_URL). Forwarding keeps the page on one origin: the calculator needs no
// CORS, and the browser needs to know only the address it opened.
import { SummaError } from '../../platform/errors.ts';

export interface ForwardedAnswer {
  status: number;
  body: unknown;
}

export const FORWARD_TIMEOUT_MS = 5_000;

/** POSTs body to <calculatorUrl>/v1/sums, the Authorization header passed on when the page sent one. */
export async function forwardAdd(calculatorUrl: string | undefined, body: unknown, authorization: string | undefined): Promise<ForwardedAnswer> {
  if (calculatorUrl === undefined) {
    throw new SummaError('UNAVAILABLE', 'this totals service forwards no Adds: TOTALS_CONSOLE_CALCULATOR_URL is not set');
  }
  let response: Response;
  try {
    response = await fetch(`${calculatorUrl}/v1/sums`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
      body: JSON.stringify(body ?? {}),
      signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
    });
  } catch (error) {
    const reason = (error as Error & { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    throw new SummaError('UNAVAILABLE', `the calculator at ${calculatorUrl} did not answer: ${reason}`, { cause: error });
  }
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { error: { code: 'INTERNAL', message: `the calculator answered HTTP ${response.status} with no JSON` } };
  }
  return { status: response.status, body: parsed };
}
