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

/** The parts of deploy/docker/Dockerfile (its last stage) that decide what a container runs. */
export interface Image {
  readonly workdir: string;
  readonly entrypoint: string[];
  readonly cmd: string[];
  /**
   * COPY sources (repository paths) and their destinations in the image. A `compiled` copy comes
   * from a build stage that ran `npm run build` over the sources it copied: the image holds X.js
   * where the repository holds X.ts (and every other file as it is).
   */
  readonly copies: { from: string; to: string; compiled?: boolean }[];
}

export const DOCKERFILE = 'deploy/docker/Dockerfile';

interface Stage {
  name?: string;
  workdir: string;
  entrypoint: string[];
  cmd: string[];
  copies: { from: string; to: string; compiled?: boolean }[];
  builds: boolean;
}

export function readImage(dockerfile = path.join(root, DOCKERFILE)): Image {
  const stages: Stage[] = [];
  let stage: Stage | undefined;
  for (const line of readFileSync(dockerfile, 'utf8').split('\n')) {
    const [instruction, ...rest] = line.trim().split(/\s+/);
    const argument = rest.join(' ');
    if (instruction?.toUpperCase() === 'FROM') {
      const as = rest.findIndex((word) => word.toUpperCase() === 'AS');
      stage = { name: as >= 0 ? rest[as + 1] : undefined, workdir: '/', entrypoint: [], cmd: [], copies: [], builds: false };
      stages.push(stage);
      continue;
    }
    if (!stage) continue;
    switch (instruction?.toUpperCase()) {
      case 'WORKDIR':
        stage.workdir = path.posix.resolve(stage.workdir, argument);
        break;
      case 'ENTRYPOINT':
        stage.entrypoint = execForm(argument, 'ENTRYPOINT');
        stage.cmd = [];
        break;
      case 'CMD':
        stage.cmd = execForm(argument, 'CMD');
        break;
      case 'RUN':
        if (/\bnpm run build\b/.test(argument)) stage.builds = true;
        break;
      case 'COPY': {
        const fromStage = rest.find((word) => word.startsWith('--from='))?.slice('--from='.length);
        const paths = rest.filter((word) => !word.startsWith('--'));
        const to = paths.pop();
        if (!to) break;
        const target = path.posix.resolve(stage.workdir, to);
        if (fromStage === undefined) {
          for (const from of paths) stage.copies.push({ from, to: target });
          break;
        }
        const source = stages.find((candidate) => candidate.name === fromStage);
        for (const from of paths) {
          const inSource = path.posix.resolve(source?.workdir ?? '/', from);
          // What `npm run build` leaves in <workdir>/dist is the stage's src/, compiled.
          if (source?.builds && inSource === path.posix.join(source.workdir, 'dist')) {
            const sources = source.copies.find((copy) => copy.to === path.posix.join(source.workdir, 'src'));
            if (sources) stage.copies.push({ from: sources.from, to: target, compiled: true });
          } else {
            for (const copy of source?.copies ?? []) if (copy.to === inSource) stage.copies.push({ ...copy, to: target });
          }
        }
        break;
      }
    }
  }
  const last = stages.at(-1);
  if (!last) throw new Error(`${DOCKERFILE} has no FROM`);
  return { workdir: last.workdir, entrypoint: last.entrypoint, cmd: last.cmd, copies: last.copies };
}

function execForm(argument: string, instruction: string): string[] {
  const parsed: unknown = JSON.parse(argument);
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) {
    throw new Error(`${DOCKERFILE}: ${instruction} is not in exec form`);
  }
  return parsed;
}

/** Whether the image holds the file at `inImage` (an absolute path in the image). */
export function imageHolds(image: Image, inImage: string): boolean {
  return image.copies.some(({ from, to, compiled }) => {
    const source = path.join(root, from);
    if (!existsSync(source)) return false;
    if (!statSync(source).isDirectory()) return inImage === to || inImage === path.posix.join(to, path.basename(from));
    if (!inImage.startsWith(`${to}/`)) return false;
    const relative = path.posix.relative(to, inImage);
    return existsSync(path.join(source, relative)) || (compiled === true && relative.endsWith('.js') && existsSync(path.join(source, relative.replace(/\.js$/, '.ts'))));
  });
}

/**
 * What a container of `image` runs, given the overrides of a compose service or a Kubernetes
 * container: `entrypoint` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD.
 */
export function containerArgv(image: Image, entrypoint: string[] | undefined, args: string[] | undefined): string[] {
  if (entrypoint) return [...entrypoint, ...(args ?? [])];
  return [...image.entrypoint, ...(args ?? image.cmd)];
}

/** The compiled main module of a service, as the image runs it. */
export const serviceScript = (service: ServiceName) => `dist/${service}/main.js`;

/**
 * Which service a container runs: its command line must be the image's entrypoint followed by one
 * service's dist/<service>/main.js, a file the image holds.
 */
export function serviceRun(image: Image, argv: string[]): { service: ServiceName } | { problem: string } {
  if (image.entrypoint.length === 0) return { problem: `${DOCKERFILE} has no ENTRYPOINT` };
  const head = argv.slice(0, image.entrypoint.length);
  const script = argv.slice(image.entrypoint.length);
  if (JSON.stringify(head) !== JSON.stringify(image.entrypoint) || script.length !== 1) {
    return { problem: `runs ${JSON.stringify(argv)}, not the image's entrypoint ${JSON.stringify(image.entrypoint)} followed by dist/<service>/main.js` };
  }
  const service = SERVICES.find((name) => script[0] === serviceScript(name));
  if (!service) return { problem: `runs ${JSON.stringify(script[0])}, which is none of ${SERVICES.map(serviceScript).join(', ')}` };
  const inImage = path.posix.resolve(image.workdir, script[0]!);
  if (!imageHolds(image, inImage)) {
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
