// Where the operator's commands find the running system: the environment first, then what the
// launcher wrote into the run state, then the default ports.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { DEFAULT_PORTS } from '../platform/ports.ts';
import { readRunState, runStateFile, type RunState } from './run-state.ts';
import { networkReason, ServiceDownError } from './ops-command.ts';
import { dataDirOf } from './status-command.ts';

export interface Targets {
  dataDir: string;
  state: RunState | null;
  /** host:port of the calculators' gRPC entry point (nginx in the cluster). */
  grpcAddress: string;
  /** The totals service's base URL (nginx in the cluster). */
  totalsUrl: string;
  /** Each calculator's /metrics, to count what they accept; empty without a run state. */
  calculatorMetricsUrls: string[];
  ca: Buffer | undefined;
  writeToken: string | undefined;
}

export async function resolveTargets(env: NodeJS.ProcessEnv): Promise<Targets> {
  const dataDir = dataDirOf(env);
  const state = await readRunState(dataDir).catch((error: Error) => {
    throw new Error(`cannot read the run state ${runStateFile(dataDir)}: ${error.message}`, { cause: error });
  });
  const fromState = state ? entryPointsOf(state) : undefined;
  const caFile = env.TLS_CA_FILE?.trim() || state?.serviceCaFile;
  return {
    dataDir,
    state,
    grpcAddress: env.CALCULATOR_GRPC_ADDRESS?.trim() || fromState?.grpcAddress || `127.0.0.1:${DEFAULT_PORTS.calculatorGrpc}`,
    totalsUrl: env.TOTALS_URL?.trim() || fromState?.totalsUrl || `http://127.0.0.1:${DEFAULT_PORTS.totalsHttp}`,
    calculatorMetricsUrls: fromState?.calculatorMetricsUrls ?? [],
    ca: caFile ? readFileSync(caFile) : undefined,
    writeToken: env.SUMMA_WRITE_TOKEN?.trim() || undefined,
  };
}

/** nginx's ports in the cluster (grpc, calculator http, totals); else the single calculator's and totals service's. */
export function entryPointsOf(state: RunState): { grpcAddress?: string; totalsUrl?: string; calculatorMetricsUrls: string[] } {
  const originOf = (url: string | undefined) => (url ? new URL(url).origin : undefined);
  const calculators = state.components.filter((component) => component.role === 'calculator');
  const totals = state.components.find((component) => component.role === 'totals');
  const nginx = state.components.find((component) => component.role === 'nginx');
  const scheme = totals?.healthUrl ? new URL(totals.healthUrl).protocol.replace(':', '') : 'http';
  const calculatorMetricsUrls = calculators.flatMap((calculator) => (calculator.healthUrl ? [`${originOf(calculator.healthUrl)}/metrics`] : []));
  if (nginx && nginx.ports.length >= 3) {
    return { grpcAddress: `127.0.0.1:${nginx.ports[0]}`, totalsUrl: `${scheme}://127.0.0.1:${nginx.ports[2]}`, calculatorMetricsUrls };
  }
  return {
    ...(calculators[0]?.ports[0] !== undefined ? { grpcAddress: `127.0.0.1:${calculators[0].ports[0]}` } : {}),
    ...(originOf(totals?.healthUrl) ? { totalsUrl: originOf(totals?.healthUrl)! } : {}),
    calculatorMetricsUrls,
  };
}

/**
 * GET url as text. A refused connection, a timeout or a 5xx answer is the service being down, told
 * with its name and address; other statuses are returned to the caller.
 */
export function getText(
  url: string,
  service: string,
  options: { ca?: Buffer; timeoutMs?: number } = {},
): Promise<{ status: number; text: string }> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const target = new URL(url);
  const get = target.protocol === 'https:' ? https.get : http.get;
  const down = (reason: string, cause?: unknown) => new ServiceDownError(service, target.origin, reason, { cause });
  return new Promise((resolve, reject) => {
    const request = get(target, { ...(options.ca ? { ca: options.ca } : {}), timeout: timeoutMs }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('error', (error) => reject(down(networkReason(error), error)));
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        if (status >= 500) reject(down(`HTTP ${status}${reasonOf(text)}`));
        else resolve({ status, text });
      });
    });
    request.on('timeout', () => request.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    request.on('error', (error) => reject(down(networkReason(error), error)));
  });
}

function reasonOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { reason?: string; error?: { message?: string } };
    const reason = parsed.reason ?? parsed.error?.message;
    return reason ? `: ${reason}` : '';
  } catch {
    return '';
  }
}

export interface TotalReading {
  total: bigint;
  count: number;
}

/** GET /total; `strong` reads the primary, which has every applied sum even when a replica lags. */
export async function readTotal(targets: Pick<Targets, 'totalsUrl' | 'ca'>, options: { strong?: boolean; timeoutMs?: number } = {}): Promise<TotalReading> {
  const url = new URL('/total', targets.totalsUrl);
  if (options.strong) url.searchParams.set('consistency', 'strong');
  const { status, text } = await getText(url.toString(), 'totals service', { ...(targets.ca ? { ca: targets.ca } : {}), ...options });
  if (status !== 200) throw new Error(`GET ${url} answered ${status}: ${text.slice(0, 200)}`);
  const body = JSON.parse(text) as { total: string; count: number | string };
  return { total: BigInt(body.total), count: Number(body.count) };
}
