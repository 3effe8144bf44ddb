// The cheap questions `summa status` asks of every component: is its process there, does its port
// take connections, what does its readiness URL answer. Each gives up after PROBE_TIMEOUT_MS, so a
// hung component makes the report slower by that much at most, never stuck.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { ReadinessProbe } from './status-report.ts';

export const PROBE_TIMEOUT_MS = 2_000;

/** Whether pid is a live process. EPERM means it is, under another user. */
export function pidAlive(pid: number | null): boolean | null {
  if (pid === null) return null;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function portOpen(port: number, host = '127.0.0.1', timeoutMs = PROBE_TIMEOUT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** GET url: its status and, from the JSON body a service's /readyz gives, the `reason` of a refusal and any `warnings`. */
export function readiness(url: string, options: { ca?: Buffer; timeoutMs?: number } = {}): Promise<ReadinessProbe> {
  const timeoutMs = options.timeoutMs ?? PROBE_TIMEOUT_MS;
  return new Promise((resolve) => {
    const target = new URL(url);
    const get = target.protocol === 'https:' ? https.get : http.get;
    const request = get(target, { timeout: timeoutMs, ...(options.ca ? { ca: options.ca } : {}) }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body = (body + chunk).slice(0, 4_096)));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, ...reasonOf(body) }));
      response.on('error', (error) => resolve({ reason: error.message }));
    });
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on('error', (error: NodeJS.ErrnoException) => resolve({ reason: error.code === 'ECONNREFUSED' ? 'connection refused' : error.message }));
  });
}

function reasonOf(body: string): { reason?: string; warnings?: string[] } {
  try {
    const parsed = JSON.parse(body) as { reason?: unknown; error?: { message?: unknown }; warnings?: unknown };
    const reason = parsed.reason ?? parsed.error?.message;
    const warnings = Array.isArray(parsed.warnings) ? parsed.warnings.filter((w): w is string => typeof w === 'string') : [];
    return { ...(typeof reason === 'string' ? { reason } : {}), ...(warnings.length > 0 ? { warnings } : {}) };
  } catch {
    return {};
  }
}

/** What Kafka Connect's REST API says of one connector (GET /connectors/{name}/status). */
export type ConnectorProbe =
  | { ok: true; name: string; registered: boolean; connector?: string; tasks: { id: number; state: string }[] }
  | { ok: false; error: string };

/** GET the connector's status URL; a 404 means no such connector is registered. */
export async function probeConnector(url: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<ConnectorProbe> {
  const name = decodeURIComponent(/\/connectors\/([^/]+)\/status$/.exec(new URL(url).pathname)?.[1] ?? '?');
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (response.status === 404) return { ok: true, name, registered: false, tasks: [] };
    if (!response.ok) return { ok: false, error: `HTTP ${response.status}` };
    const body = (await response.json()) as { connector: { state: string }; tasks: { id: number; state: string }[] };
    return { ok: true, name, registered: true, connector: body.connector.state, tasks: body.tasks.map(({ id, state }) => ({ id, state })).sort((a, b) => a.id - b.id) };
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
}

/** promise, or `fallback(message)` once ms have passed without it settling. */
export function within<T>(ms: number, promise: Promise<T>, fallback: (message: string) => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise.catch((error: Error) => fallback(error.message)), timeout]).finally(() => clearTimeout(timer));
}
