// nginx in front of several instances of a service: a config generated from the upstream lists into
// the data folder, and one nginx process tied to its starter (the launcher).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { hasExited, spawnTiedToParent } from '../lib/tied-process.ts';
import type { RunningProcess } from './supervisor.ts';

export interface NginxProxy {
  /** The upstream's name in the config: [a-z_]+. */
  name: string;
  /** nginx listens on 127.0.0.1:listenPort. */
  listenPort: number;
  /** 'grpc': HTTP/2 cleartext in, grpc_pass out; 'http': HTTP/1.1 in, proxy_pass out. */
  protocol: 'grpc' | 'http';
  /** The ports of the instances on 127.0.0.1. */
  upstreamPorts: number[];
  /**
   * Statuses on which a request nginx may resend goes to the next instance instead of the client
   * (beyond connection errors and timeouts), e.g. 503 from a totals service that is not ready.
   */
  retryOnStatus?: number[];
}

export interface NginxServerOptions {
  /** The config, the pid file, the temp folders and the logs live here. */
  dataDir: string;
  /** The nginx command (locateTool('nginx') finds the project's). */
  binary: string;
  proxies: NginxProxy[];
  readyTimeoutMs?: number;
}

export interface NginxServer extends RunningProcess {
  readonly ports: number[];
  /** nginx's error log (and its stdout and stderr). */
  readonly logFile: string;
  /** SIGKILL, for fault tests. */
  kill(): Promise<void>;
}

const HOST = '127.0.0.1';
const STOP_TIMEOUT_MS = 10_000;
/**
 * How long an instance that refused a connection (or timed out) is left out before nginx tries it
 * again. A killed service is back within seconds, so this is short; one failure is enough to skip
 * it, as a refused connection is not a fluke.
 */
const FAIL_TIMEOUT_S = 3;

/** The whole nginx.conf for these proxies, with every path nginx writes under `dataDir`. */
export function nginxConfig(proxies: NginxProxy[], dataDir: string): string {
  const temp = (name: string) => JSON.stringify(path.join(dataDir, 'temp', name));
  const upstreams = proxies.map(
    (proxy) => `
  upstream ${proxy.name} {
${proxy.upstreamPorts.map((port) => `    server ${HOST}:${port} max_fails=1 fail_timeout=${FAIL_TIMEOUT_S}s;`).join('\n')}
    keepalive 32;
  }`,
  );
  const servers = proxies.map((proxy) => (proxy.protocol === 'grpc' ? grpcServer(proxy) : httpServer(proxy)));
  return `# Written by tools/local-stack/nginx-server.ts on every start; edits are lost.
# One process, no workers: the launcher supervises it like every other part, the kernel's
# parent-death signal reaches it, and a kill -9 leaves no orphaned worker holding the ports.
master_process off;
daemon off;
pid ${JSON.stringify(path.join(dataDir, 'nginx.pid'))};
error_log ${JSON.stringify(path.join(dataDir, 'error.log'))} warn;

events {
  worker_connections 4096;
}

http {
  access_log off;
  # nginx's compiled-in paths are under /var, where only root may write.
  client_body_temp_path ${temp('client_body')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};

  # Passive health checks: an instance that refuses a connection or times out is skipped for
  # ${FAIL_TIMEOUT_S}s (max_fails/fail_timeout), and the request goes to the next one
  # (*_next_upstream). Never with non_idempotent: an Add (a POST, gRPC's too) that reached an
  # instance is not sent again, since it may have been recorded there, and an Add without a request
  # id would then be counted twice. A client that sent an id retries it safely itself.
${upstreams.join('\n')}
${servers.join('\n')}
}
`;
}

function grpcServer(proxy: NginxProxy): string {
  return `
  server {
    listen ${HOST}:${proxy.listenPort} http2;
    location / {
      grpc_pass grpc://${proxy.name};
      grpc_connect_timeout 2s;
      grpc_next_upstream error timeout${retryStatuses(proxy)};
      grpc_next_upstream_tries ${proxy.upstreamPorts.length};
      # The calculator's answer may wait for a group commit; the client's deadline is what counts.
      grpc_read_timeout 60s;
      grpc_send_timeout 60s;
    }
  }`;
}

function httpServer(proxy: NginxProxy): string {
  return `
  server {
    listen ${HOST}:${proxy.listenPort};
    location / {
      proxy_pass http://${proxy.name};
      # HTTP/1.1 with no Connection header, so that upstream connections are kept alive.
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_connect_timeout 2s;
      proxy_next_upstream error timeout${retryStatuses(proxy)};
      proxy_next_upstream_tries ${proxy.upstreamPorts.length};
      # Between two reads: the console's event stream (/console/events) sends a sample every second,
      # so it is never cut, and it asks for no buffering itself (X-Accel-Buffering: no), which
      # nginx honours as long as proxy_ignore_headers does not name it.
      proxy_read_timeout 60s;
    }
  }`;
}

function retryStatuses(proxy: NginxProxy): string {
  return (proxy.retryOnStatus ?? []).map((status) => ` http_${status}`).join('');
}

/**
 * Writes the config and starts nginx on it; resolves once every listener accepts connections.
 * stop() is a graceful stop (SIGQUIT: requests in flight are answered), forced after a while.
 */
export async function startNginxServer(options: NginxServerOptions): Promise<NginxServer> {
  const dataDir = path.resolve(options.dataDir);
  // Readiness is a listener that accepts: one that already did would pass for nginx's.
  const ports = options.proxies.map((proxy) => proxy.listenPort);
  for (const port of ports) {
    if (await accepts(port)) throw new Error(`nginx cannot listen on ${HOST}:${port}: something else already does`);
  }
  await Promise.all(['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((name) => mkdir(path.join(dataDir, 'temp', name), { recursive: true })));
  const configFile = path.join(dataDir, 'nginx.conf');
  const logFile = path.join(dataDir, 'error.log');
  await writeFile(configFile, nginxConfig(options.proxies, dataDir));

  // -e: the log nginx writes before it has read the config; -p: relative paths, of which there are none.
  const child = spawnTiedToParent(options.binary, ['-p', dataDir, '-e', logFile, '-c', configFile], logFile);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => child.pid === undefined && resolve({ code: null, signal: null }));
  });
  const terminate = async (signal: NodeJS.Signals, graceMs: number) => {
    if (hasExited(child)) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  const server: NginxServer = {
    pid: child.pid ?? -1,
    ports,
    logFile,
    exited,
    stop: () => terminate('SIGQUIT', STOP_TIMEOUT_MS),
    kill: () => terminate('SIGKILL', 0),
  };

  const timeoutMs = options.readyTimeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  let died = false;
  void exited.then(() => (died = true));
  for (;;) {
    if (died) throw new Error(`nginx exited during start-up (${describeExit(await exited)}); see ${logFile}:\n${await logTail(logFile)}`);
    if ((await Promise.all(ports.map(accepts))).every(Boolean)) return server;
    if (Date.now() > deadline) {
      await server.kill();
      throw new Error(`nginx did not listen on ${ports.join(', ')} within ${timeoutMs / 1000}s; see ${logFile}:\n${await logTail(logFile)}`);
    }
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 50))]);
  }
}

function describeExit({ code, signal }: { code: number | null; signal: NodeJS.Signals | null }): string {
  return signal ?? `exit code ${code}`;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, HOST);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function logTail(file: string, lines = 15): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '(no log)');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
