// What the deployment tests need to know about the services and their image, taken from the
// sources themselves: the environment variables each service reads (recorded while its real
// configuration reader runs), its settings for a given environment, and how the image built from
// deploy/docker/Dockerfile starts a service.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readCalculatorConfig } from '../../src/calculator/config.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { tracingRequested } from '../../src/platform/tracing/sdk.ts';
import { readRelayConfig } from '../../src/relay/config.ts';
import { readTotalsConfig } from '../../src/totals/config.ts';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const SERVICES = ['calculator', 'relay', 'totals'] as const;
export type ServiceName = (typeof SERVICES)[number];

type Env = Record<string, string | undefined>;

/** Parsed YAML, walked with optional chaining: the checks report what is missing instead of assuming it. */
export type Yaml = any;

/** The settings of a service that a deployment has to agree with. */
export interface ServiceSettings {
  readonly host: string;
  /** Port name (grpc, http) → port number. */
  readonly ports: Readonly<Record<string, number>>;
  readonly shutdownDelayMs: number;
  readonly shutdownTimeoutMs: number;
  readonly groupId?: string;
}

/** The service's real configuration reader on `env`; throws the service's ConfigError on a bad value. */
export function serviceSettings(service: ServiceName, env: Env): ServiceSettings {
  switch (service) {
    case 'calculator': {
      const config = readCalculatorConfig(env);
      return settings(config, { grpc: config.grpcPort, http: config.httpPort });
    }
    case 'relay': {
      const config = readRelayConfig(env);
      return settings(config, { http: config.httpPort });
    }
    case 'totals': {
      const config = readTotalsConfig(env);
      return { ...settings(config, { http: config.httpPort }), groupId: config.groupId };
    }
  }
}

function settings(config: { host: string; shutdown: { delayMs: number; timeoutMs: number } }, ports: Record<string, number>): ServiceSettings {
  return { host: config.host, ports, shutdownDelayMs: config.shutdown.delayMs, shutdownTimeoutMs: config.shutdown.timeoutMs };
}

const variablesCache = new Map<ServiceName, ReadonlySet<string>>();

/**
 * Every environment variable `service` reads: its configuration reader, the logger and the tracing
 * switch are run against an environment that records each name asked for, and the variables the
 * tracing set-up reads once tracing is on are taken from its source.
 */
export function variablesRead(service: ServiceName): ReadonlySet<string> {
  const cached = variablesCache.get(service);
  if (cached) return cached;
  const names = new Set<string>();
  const recorder = new Proxy({} as Env, {
    get(_target, name) {
      if (typeof name === 'string') names.add(name);
      return undefined;
    },
  });
  serviceSettings(service, recorder);
  createLogger(service, recorder);
  tracingRequested(recorder);
  const tracingSource = readFileSync(path.join(root, 'src/platform/tracing/sdk.ts'), 'utf8');
  for (const match of tracingSource.matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g)) names.add(match[1]!);
  variablesCache.set(service, names);
  return names;
}

/** The parts of deploy/docker/Dockerfile that decide what a container runs. */
export interface Image {
  readonly workdir: string;
  readonly entrypoint: string[];
  readonly cmd: string[];
  /** COPY sources (repository paths) and their destinations in the image. */
  readonly copies: { from: string; to: string }[];
}

export const DOCKERFILE = 'deploy/docker/Dockerfile';

export function readImage(dockerfile = path.join(root, DOCKERFILE)): Image {
  let workdir = '/';
  let entrypoint: string[] = [];
  let cmd: string[] = [];
  const copies: { from: string; to: string }[] = [];
  for (const line of readFileSync(dockerfile, 'utf8').split('\n')) {
    const [instruction, ...rest] = line.trim().split(/\s+/);
    const argument = rest.join(' ');
    switch (instruction?.toUpperCase()) {
      case 'WORKDIR':
        workdir = path.posix.resolve(workdir, argument);
        break;
      case 'ENTRYPOINT':
        entrypoint = execForm(argument, 'ENTRYPOINT');
        cmd = [];
        break;
      case 'CMD':
        cmd = execForm(argument, 'CMD');
        break;
      case 'COPY': {
        const paths = rest.filter((word) => !word.startsWith('--'));
        const to = paths.pop();
        for (const from of paths) if (to) copies.push({ from, to: path.posix.resolve(workdir, to) });
        break;
      }
    }
  }
  return { workdir, entrypoint, cmd, copies };
}

function execForm(argument: string, instruction: string): string[] {
  const parsed: unknown = JSON.parse(argument);
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) {
    throw new Error(`${DOCKERFILE}: ${instruction} is not in exec form`);
  }
  return parsed;
}

/**
 * What a container of `image` runs, given the overrides of a compose service or a Kubernetes
 * container: `entrypoint` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD.
 */
export function containerArgv(image: Image, entrypoint: string[] | undefined, args: string[] | undefined): string[] {
  if (entrypoint) return [...entrypoint, ...(args ?? [])];
  return [...image.entrypoint, ...(args ?? image.cmd)];
}

/**
 * Which service a container runs: its command line must be the image's entrypoint followed by one
 * service's src/<service>/main.ts, a file the image holds.
 */
export function serviceRun(image: Image, argv: string[]): { service: ServiceName } | { problem: string } {
  if (image.entrypoint.length === 0) return { problem: `${DOCKERFILE} has no ENTRYPOINT` };
  const head = argv.slice(0, image.entrypoint.length);
  const script = argv.slice(image.entrypoint.length);
  if (JSON.stringify(head) !== JSON.stringify(image.entrypoint) || script.length !== 1) {
    return { problem: `runs ${JSON.stringify(argv)}, not the image's entrypoint ${JSON.stringify(image.entrypoint)} followed by src/<service>/main.ts` };
  }
  const service = SERVICES.find((name) => script[0] === `src/${name}/main.ts`);
  if (!service) return { problem: `runs ${JSON.stringify(script[0])}, which is none of ${SERVICES.map((name) => `src/${name}/main.ts`).join(', ')}` };
  const inImage = path.posix.resolve(image.workdir, script[0]!);
  const copied = image.copies.some(({ from, to }) => {
    const source = path.join(root, from);
    if (!existsSync(source)) return false;
    if (statSync(source).isDirectory()) return inImage.startsWith(`${to}/`) && existsSync(path.join(source, path.posix.relative(to, inImage)));
    return inImage === to || inImage === path.posix.join(to, path.basename(from));
  });
  if (!copied) {
    return { problem: `runs ${inImage}, which ${DOCKERFILE} does not copy into the image` };
  }
  return { service };
}

/** `value` as a URL, or undefined when it is none. */
export function parseUrl(value: string | undefined): URL | undefined {
  if (value === undefined) return undefined;
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

/** The problems found by `check`, for assertions that name them all. */
export function describeProblems(problems: readonly string[]): string {
  return problems.length === 0 ? 'no problems' : `\n  - ${problems.join('\n  - ')}`;
}
