// The docker compose stack, checked without running it: docker-compose validates the file, and the
// checks below hold it against the services' real settings and the files it mounts. Each check is
// also run on a broken copy, to show that it fails when it should.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import YAML from 'yaml';
import {
  containerArgv,
  DOCKERFILE,
  describeProblems,
  readImage,
  root,
  serviceRun,
  serviceSettings,
  parseUrl,
  type ServiceName,
  type ServiceSettings,
  type Yaml,
} from './deploy-support.ts';
import { missingTool, requireTool } from '../support/tools.ts';
import { envKafkaConfig } from '../../src/platform/service/service-config.ts';
import { OUTBOX_CAPTURE_SLOT } from '../../src/outbox/capture-slot.ts';
import { outboxConnectorConfig } from '../../tools/local-stack/kafka-connect.ts';

const COMPOSE_FILE = path.join(root, 'deploy/compose/docker-compose.yml');
/** The cluster topology: three brokers, a PostgreSQL replica, two relays, three totals behind nginx. */
const CLUSTER_FILE = path.join(root, 'deploy/compose/docker-compose.cluster.yml');
/** Change data capture: Kafka Connect with Debezium's connector instead of the relay. */
const CDC_FILE = path.join(root, 'deploy/compose/docker-compose.cdc.yml');
const CONNECT_POM = path.join(root, 'tools/local-stack/kafka-connect/pom.xml');

interface ComposeStack {
  readonly file: string;
  readonly dir: string;
  readonly doc: Yaml;
  /** Reads a file of the repository; a test replaces it to feed a changed copy. */
  read(file: string): string;
}

function loadStack(file = COMPOSE_FILE): ComposeStack {
  return {
    file,
    dir: path.dirname(file),
    doc: YAML.parse(readFileSync(file, 'utf8'), { merge: true }),
    read: (file) => readFileSync(file, 'utf8'),
  };
}

/** A copy of the stack to break: `change` edits the parsed file, `files` replaces file contents. */
function changedStack(change: (services: Record<string, Yaml>) => void, files: Record<string, (text: string) => string> = {}, file = COMPOSE_FILE): ComposeStack {
  const stack = loadStack(file);
  const doc = structuredClone(stack.doc);
  change(doc.services);
  return {
    ...stack,
    doc,
    read: (file) => {
      const text = stack.read(file);
      const edit = files[path.relative(root, file)];
      return edit ? edit(text) : text;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Reading the compose file

function services(stack: ComposeStack): Record<string, Yaml> {
  return stack.doc?.services ?? {};
}

function environment(service: Yaml): Record<string, string> {
  const env = service?.environment;
  const result: Record<string, string> = {};
  if (Array.isArray(env)) {
    for (const item of env) {
      const [name, ...value] = String(item).split('=');
      result[name!] = value.join('=');
    }
  } else if (env && typeof env === 'object') {
    for (const [name, value] of Object.entries(env)) result[name] = value === null ? '' : String(value);
  }
  return result;
}

function argv(value: Yaml): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  return Array.isArray(value) ? value.map(String) : String(value).split(/\s+/).filter(Boolean);
}

function listOf(value: string | undefined): string[] {
  return (value ?? '').split(',').map((item) => item.trim()).filter(Boolean);
}

function dependsOn(service: Yaml): string[] {
  const value = service?.depends_on;
  return Array.isArray(value) ? value.map(String) : Object.keys(value ?? {});
}

interface Mount {
  readonly source: string;
  readonly target: string;
  readonly bind: boolean;
}

function mounts(service: Yaml): Mount[] {
  return (service?.volumes ?? []).map((volume: Yaml): Mount => {
    if (typeof volume === 'string') {
      const [source = '', target = ''] = volume.split(':');
      return { source, target, bind: /^[./~]/.test(source) };
    }
    return { source: String(volume?.source ?? ''), target: String(volume?.target ?? ''), bind: volume?.type === 'bind' };
  });
}

/** The repository path behind `containerPath` in `service`, through its bind mounts. */
function mountedFrom(stack: ComposeStack, service: Yaml, containerPath: string): string | undefined {
  for (const mount of mounts(service)) {
    if (!mount.bind) continue;
    const target = mount.target.replace(/\/+$/, '');
    if (containerPath === target || containerPath.startsWith(`${target}/`)) {
      return path.join(path.resolve(stack.dir, mount.source), containerPath.slice(target.length));
    }
  }
  return undefined;
}

function withImage(stack: ComposeStack, pattern: RegExp): string[] {
  return Object.entries(services(stack))
    .filter(([, service]) => pattern.test(String(service?.image ?? '')))
    .map(([name]) => name);
}

const IMAGES = {
  postgres: /^(docker\.io\/)?(library\/)?postgres(:|$)/,
  kafka: /^(docker\.io\/)?(apache\/kafka|bitnami\/kafka|confluentinc\/cp-kafka)(:|$)/,
  zookeeper: /zookeeper/,
  nginx: /^(docker\.io\/)?(library\/)?nginx(:|$)/,
  prometheus: /^(docker\.io\/)?prom\/prometheus(:|$)/,
  grafana: /^(docker\.io\/)?grafana\/grafana(-oss)?(:|$)/,
  loki: /^(docker\.io\/)?grafana\/loki(:|$)/,
  logShipper: /^(docker\.io\/)?(grafana\/promtail|grafana\/alloy|fluent\/fluent-bit|timberio\/vector)(:|$)/,
  tempo: /^(docker\.io\/)?grafana\/tempo(:|$)/,
  kafkaUi: /^(docker\.io\/)?(provectuslabs|kafbat)\/kafka-ui(:|$)/,
};

interface SummaContainer {
  readonly name: string;
  readonly service: ServiceName;
  readonly settings: ServiceSettings;
}

/**
 * The compose services that run the image built from deploy/docker/Dockerfile, with the Summa
 * service each one runs and that service's settings under the compose environment.
 */
function summaContainers(stack: ComposeStack): { containers: SummaContainer[]; problems: string[] } {
  const image = readImage();
  const all = services(stack);
  const builds = (service: Yaml) => {
    const build = service?.build;
    if (!build) return false;
    const context = path.resolve(stack.dir, String(typeof build === 'string' ? build : build.context ?? '.'));
    return path.resolve(context, typeof build === 'object' && build.dockerfile ? String(build.dockerfile) : 'Dockerfile') === path.join(root, DOCKERFILE);
  };
  const builtImages = new Set(Object.values(all).filter((service) => builds(service) && service.image).map((service) => String(service.image)));
  const containers: SummaContainer[] = [];
  const problems: string[] = [];
  for (const [name, service] of Object.entries(all)) {
    if (!builds(service) && !builtImages.has(String(service?.image ?? ''))) continue;
    const run = serviceRun(image, containerArgv(image, argv(service.entrypoint), argv(service.command)));
    if ('problem' in run) {
      problems.push(`${name} ${run.problem}`);
      continue;
    }
    try {
      containers.push({ name, service: run.service, settings: serviceSettings(run.service, environment(service)) });
    } catch (error) {
      problems.push(`${name}: the ${run.service} service refuses its environment: ${(error as Error).message}`);
    }
  }
  if (containers.length === 0 && problems.length === 0) problems.push(`no service runs the image built from ${DOCKERFILE}`);
  return { containers, problems };
}

function ofService(stack: ComposeStack, service: ServiceName): SummaContainer[] {
  return summaContainers(stack).containers.filter((container) => container.service === service);
}

/** The Summa containers, for a check about them; with a problem when there are none, so that such a check never passes empty. */
function containersToCheck(stack: ComposeStack, problems: string[], service?: ServiceName): SummaContainer[] {
  const containers = summaContainers(stack).containers.filter((container) => !service || container.service === service);
  if (containers.length === 0) problems.push(`no ${service ?? 'Summa'} container to check`);
  return containers;
}

// ---------------------------------------------------------------------------------------------
// The checks: each returns its problems, none when the stack is right.

function checkComposeConfig(input: { file: string } | { text: string }): string[] {
  const dockerCompose = requireTool('docker-compose');
  const result =
    'file' in input
      ? spawnSync(dockerCompose, ['-f', input.file, 'config', '-q'], { cwd: root, encoding: 'utf8' })
      : spawnSync(dockerCompose, ['-f', '-', '--project-directory', path.dirname(COMPOSE_FILE), 'config', '-q'], {
          cwd: root,
          input: input.text,
          encoding: 'utf8',
        });
  if (result.error) return [`docker-compose could not run (tools/setup/21-docker-compose.sh installs it): ${result.error.message}`];
  return result.status === 0 ? [] : [`docker-compose config -q exited ${result.status}: ${result.stderr.trim()}`];
}

function checkRequiredServices(stack: ComposeStack): string[] {
  const problems: string[] = [];
  const all = services(stack);
  const require = (what: string, pattern: RegExp) => {
    const found = withImage(stack, pattern);
    if (found.length === 0) problems.push(`${what}: no service runs an image matching ${pattern}`);
    return found;
  };
  require('PostgreSQL', IMAGES.postgres);
  for (const name of require('Kafka', IMAGES.kafka)) {
    const env = environment(all[name]);
    const roles = (env.KAFKA_PROCESS_ROLES ?? env.KAFKA_CFG_PROCESS_ROLES ?? '').split(',').map((role) => role.trim());
    if (!roles.includes('controller') || !roles.includes('broker')) {
      problems.push(`Kafka (${name}) is not in KRaft mode: KAFKA_PROCESS_ROLES is ${JSON.stringify(roles.join(','))}, not broker,controller`);
    }
    if (env.KAFKA_ZOOKEEPER_CONNECT ?? env.KAFKA_CFG_ZOOKEEPER_CONNECT) problems.push(`Kafka (${name}) is configured with ZooKeeper`);
  }
  for (const name of withImage(stack, IMAGES.zookeeper)) problems.push(`${name}: ZooKeeper has no place in a KRaft stack`);

  const { problems: imageProblems } = summaContainers(stack);
  problems.push(...imageProblems);
  const calculators = ofService(stack, 'calculator');
  if (calculators.length !== 3) problems.push(`three calculator instances expected, found ${calculators.length}: ${calculators.map((c) => c.name).join(', ')}`);
  if (ofService(stack, 'relay').length === 0) problems.push('no relay service');
  if (ofService(stack, 'totals').length === 0) problems.push('no totals service');

  const proxies = require('nginx in front of the calculators', IMAGES.nginx);
  for (const name of proxies) {
    const missing = calculators.filter((calculator) => !dependsOn(all[name]).includes(calculator.name));
    if (missing.length > 0) problems.push(`${name} does not depend on ${missing.map((c) => c.name).join(', ')}`);
  }
  require('Prometheus', IMAGES.prometheus);
  require('Grafana', IMAGES.grafana);
  const loki = require('Loki', IMAGES.loki);
  for (const name of require('a log shipper for Loki', IMAGES.logShipper)) {
    if (!loki.some((lokiName) => dependsOn(all[name]).includes(lokiName))) problems.push(`${name} does not depend on Loki`);
  }
  require('Tempo', IMAGES.tempo);
  require('kafka-ui', IMAGES.kafkaUi);
  return problems;
}

/** Every file or directory mounted from the repository exists, and every config file a service is told to read is mounted. */
function checkMounts(stack: ComposeStack): string[] {
  const problems: string[] = [];
  for (const [name, service] of Object.entries(services(stack))) {
    for (const mount of mounts(service)) {
      if (!mount.bind) continue;
      const source = path.resolve(stack.dir, mount.source);
      const inRepo = !path.relative(root, source).startsWith('..');
      if (inRepo && !existsSync(source)) problems.push(`${name} mounts ${mount.source} (${path.relative(root, source)}), which does not exist`);
      if (inRepo && existsSync(source) && /\.[a-z]+$/i.test(mount.target) && !statSync(source).isFile()) {
        problems.push(`${name} mounts the directory ${mount.source} on the file ${mount.target}`);
      }
    }
    const build = service?.build;
    if (build) {
      const context = path.resolve(stack.dir, String(typeof build === 'string' ? build : build.context ?? '.'));
      const dockerfile = path.resolve(context, typeof build === 'object' && build.dockerfile ? String(build.dockerfile) : 'Dockerfile');
      if (!existsSync(dockerfile)) problems.push(`${name} builds ${path.relative(root, dockerfile)}, which does not exist`);
    }
    for (const arg of argv(service?.command) ?? []) {
      const configFile = /^--?config\.file=(.+)$/.exec(arg)?.[1];
      if (!configFile) continue;
      const source = mountedFrom(stack, service, configFile);
      if (!source) problems.push(`${name} reads ${configFile}, which no bind mount provides`);
      else if (!existsSync(source)) problems.push(`${name} reads ${configFile} from ${path.relative(root, source)}, which does not exist`);
    }
  }
  return problems;
}

interface NginxDirective {
  readonly name: string;
  readonly args: string[];
  readonly block?: NginxDirective[];
}

/** nginx.conf as a tree of directives. */
function parseNginx(text: string): NginxDirective[] {
  const tokens = text.match(/#[^\n]*|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[{};]|[^\s{};]+/g)?.filter((token) => !token.startsWith('#')) ?? [];
  let at = 0;
  const parseBlock = (): NginxDirective[] => {
    const directives: NginxDirective[] = [];
    while (at < tokens.length) {
      const words: string[] = [];
      while (at < tokens.length && !['{', '}', ';'].includes(tokens[at]!)) words.push(tokens[at++]!.replace(/^(["'])(.*)\1$/, '$2'));
      const end = tokens[at++];
      if (end === '}' || end === undefined) {
        if (words.length > 0) throw new Error(`nginx.conf: directive ${words[0]} is not terminated`);
        return directives;
      }
      const [name, ...args] = words;
      if (!name) throw new Error(`nginx.conf: unexpected ${end}`);
      directives.push(end === '{' ? { name, args, block: parseBlock() } : { name, args });
    }
    return directives;
  };
  return parseBlock();
}

function findAll(directives: NginxDirective[], name: string): NginxDirective[] {
  return directives.flatMap((directive) => [...(directive.name === name ? [directive] : []), ...findAll(directive.block ?? [], name)]);
}

/** Each nginx service with its configuration, mounted from the repository and parsed. */
function nginxConfigs(stack: ComposeStack, problems: string[]): { name: string; service: Yaml; config: NginxDirective[] }[] {
  const found: { name: string; service: Yaml; config: NginxDirective[] }[] = [];
  for (const name of withImage(stack, IMAGES.nginx)) {
    const service = services(stack)[name];
    const file = mountedFrom(stack, service, '/etc/nginx/nginx.conf');
    if (!file || !existsSync(file)) {
      problems.push(`${name}: no nginx.conf mounted from the repository at /etc/nginx/nginx.conf`);
      continue;
    }
    try {
      found.push({ name, service, config: parseNginx(stack.read(file)) });
    } catch (error) {
      problems.push(`${name}: ${(error as Error).message}`);
    }
  }
  return found;
}

/** A Summa service nginx stands in front of, and how it passes to it. */
interface Fronted {
  readonly service: ServiceName;
  readonly kind: 'grpc' | 'http';
  readonly pass: 'grpc_pass' | 'proxy_pass';
  readonly scheme: 'grpc' | 'http';
}

const CALCULATORS_FRONTED: Fronted[] = [
  { service: 'calculator', kind: 'grpc', pass: 'grpc_pass', scheme: 'grpc' },
  { service: 'calculator', kind: 'http', pass: 'proxy_pass', scheme: 'http' },
];
const TOTALS_FRONTED: Fronted = { service: 'totals', kind: 'http', pass: 'proxy_pass', scheme: 'http' };

/**
 * nginx's configuration names exactly the containers of each service it fronts (all three
 * calculators, for gRPC on their gRPC port and for HTTP on their HTTP port), and publishes the port.
 */
function checkNginx(stack: ComposeStack, fronts: Fronted[] = CALCULATORS_FRONTED): string[] {
  const problems: string[] = [];
  for (const { name, service, config } of nginxConfigs(stack, problems)) {
    const upstreams = new Map(findAll(config, 'upstream').map((upstream) => [upstream.args[0], findAll(upstream.block ?? [], 'server').map((server) => server.args[0])]));
    const published = (service?.ports ?? []).map((port: Yaml) => Number(typeof port === 'object' ? port?.target : String(port).split(':').pop()));
    const servers = findAll(config, 'http').flatMap((http) => (http.block ?? []).filter((directive) => directive.name === 'server'));
    for (const { service: fronted, kind, pass, scheme } of fronts) {
      const containers = containersToCheck(stack, problems, fronted);
      const one = fronted === 'totals' ? 'totals service' : fronted;
      const ports = new Set(containers.map((container) => container.settings.ports[kind]));
      for (const port of ports) {
        if (!published.includes(port)) problems.push(`${name} does not publish the ${one}s' ${kind} port ${port}`);
        const server = servers.find((candidate) => findAll(candidate.block ?? [], 'listen').some((listen) => new RegExp(`(^|:)${port}$`).test(listen.args[0] ?? '')));
        if (!server) {
          problems.push(`${name}: no server in nginx.conf listens on ${port} (${kind})`);
          continue;
        }
        const listen = findAll(server.block ?? [], 'listen').find((directive) => new RegExp(`(^|:)${port}$`).test(directive.args[0] ?? ''));
        if (kind === 'grpc' && !listen?.args.includes('http2') && !findAll(server.block ?? [], 'http2').some((directive) => directive.args[0] === 'on')) {
          problems.push(`${name}: the server on ${port} does not speak HTTP/2, which gRPC needs`);
        }
        const passes = findAll(server.block ?? [], pass);
        if (passes.length === 0) problems.push(`${name}: the server on ${port} has no ${pass}`);
        for (const directive of passes) {
          const url = directive.args[0] ?? '';
          const upstream = new RegExp(`^(${scheme}s?://)?([^/:]+)`).exec(url)?.[2] ?? '';
          const members = upstreams.get(upstream);
          if (!members) {
            problems.push(`${name}: ${pass} ${url} names no upstream block`);
            continue;
          }
          const expected = containers.filter((container) => container.settings.ports[kind] === port).map((container) => `${container.name}:${port}`);
          const missing = expected.filter((member) => !members.includes(member));
          const unknown = members.filter((member) => !expected.includes(member ?? ''));
          if (missing.length > 0) problems.push(`${name}: upstream ${upstream} (${kind}) lacks ${missing.join(', ')}`);
          if (unknown.length > 0) problems.push(`${name}: upstream ${upstream} (${kind}) has ${unknown.join(', ')}, which is no ${one}'s ${kind} port`);
        }
      }
    }
  }
  return problems;
}

/** What nginx's *_next_upstream directives accept (nginx.org, ngx_http_proxy_module and ngx_http_grpc_module). */
const NEXT_UPSTREAM_CONDITIONS = new Set(['error', 'timeout', 'invalid_header', 'http_500', 'http_502', 'http_503', 'http_504', 'http_403', 'http_404', 'http_429', 'non_idempotent', 'off']);

/**
 * Passive health checks and safe retries: every upstream server is taken out after failures
 * (max_fails, fail_timeout), every *_next_upstream condition is one nginx knows (an unknown one
 * stops nginx from starting), and no location lets nginx resend a POST that already reached an
 * upstream (non_idempotent): an Add without a request id would count twice.
 */
function checkNginxRetries(stack: ComposeStack): string[] {
  const problems: string[] = [];
  for (const { name, config } of nginxConfigs(stack, problems)) {
    for (const upstream of findAll(config, 'upstream')) {
      for (const server of findAll(upstream.block ?? [], 'server')) {
        const parameter = (key: string) => server.args.find((arg) => arg.startsWith(`${key}=`))?.slice(key.length + 1);
        const maxFails = parameter('max_fails');
        if (maxFails === undefined || !parameter('fail_timeout')) {
          problems.push(`${name}: upstream ${upstream.args[0]} server ${server.args[0]} sets no max_fails and fail_timeout (passive health check)`);
        } else if (maxFails === '0') {
          problems.push(`${name}: upstream ${upstream.args[0]} server ${server.args[0]} has max_fails=0, which never takes it out`);
        }
      }
    }
    for (const directive of [...findAll(config, 'proxy_next_upstream'), ...findAll(config, 'grpc_next_upstream')]) {
      for (const condition of directive.args) {
        if (!NEXT_UPSTREAM_CONDITIONS.has(condition)) problems.push(`${name}: ${directive.name} ${condition} is no condition nginx knows`);
        if (condition === 'non_idempotent') problems.push(`${name}: ${directive.name} non_idempotent resends an Add that already reached a calculator`);
      }
    }
  }
  return problems;
}

/** Prometheus scrapes /metrics of every calculator, relay and totals container on its HTTP port. */
function checkPrometheus(stack: ComposeStack): string[] {
  const problems: string[] = [];
  for (const name of withImage(stack, IMAGES.prometheus)) {
    const service = services(stack)[name];
    const configPath = (argv(service?.command) ?? []).map((arg) => /^--config\.file=(.+)$/.exec(arg)?.[1]).find(Boolean) ?? '/etc/prometheus/prometheus.yml';
    const file = mountedFrom(stack, service, configPath);
    if (!file || !existsSync(file)) {
      problems.push(`${name}: ${configPath} is not mounted from the repository`);
      continue;
    }
    const config: Yaml = YAML.parse(stack.read(file));
    const scraped = new Set<string>();
    for (const job of config?.scrape_configs ?? []) {
      if ((job?.metrics_path ?? '/metrics') !== '/metrics' || (job?.scheme ?? 'http') !== 'http') continue;
      for (const staticConfig of job?.static_configs ?? []) for (const target of staticConfig?.targets ?? []) scraped.add(String(target));
    }
    for (const container of containersToCheck(stack, problems)) {
      const target = `${container.name}:${container.settings.ports.http}`;
      if (!scraped.has(target)) problems.push(`${name} does not scrape ${target}/metrics (${container.service}'s HTTP port)`);
    }
  }
  return problems;
}

/** The metric names the services' sources register, for the alert rules to be held against. */
function exportedMetricNames(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (entry.name.endsWith('.ts')) for (const match of readFileSync(file, 'utf8').matchAll(/'(summa_[a-z0-9_]+)'/g)) names.add(match[1]!);
    }
  };
  walk(path.join(root, 'src'));
  return names;
}

/**
 * Every rule file a Prometheus config names is mounted beside it from the repository, parses as
 * rule groups, and its rules name only metrics the services export (a misspelt one never fires).
 */
function checkAlertRules(stack: ComposeStack): string[] {
  const problems: string[] = [];
  const exported = exportedMetricNames();
  for (const name of withImage(stack, IMAGES.prometheus)) {
    const service = services(stack)[name];
    const configPath = (argv(service?.command) ?? []).map((arg) => /^--config\.file=(.+)$/.exec(arg)?.[1]).find(Boolean) ?? '/etc/prometheus/prometheus.yml';
    const file = mountedFrom(stack, service, configPath);
    if (!file || !existsSync(file)) continue;
    const config: Yaml = YAML.parse(stack.read(file));
    const ruleFiles: string[] = config?.rule_files ?? [];
    if (ruleFiles.length === 0) problems.push(`${name}: ${configPath} loads no alert rules (rule_files)`);
    for (const ruleFile of ruleFiles) {
      const containerPath = path.posix.resolve(path.posix.dirname(configPath), ruleFile);
      const source = mountedFrom(stack, service, containerPath);
      if (!source || !existsSync(source)) {
        problems.push(`${name}: ${containerPath} (rule_files) is not mounted from the repository`);
        continue;
      }
      const rules: Yaml[] = (YAML.parse(stack.read(source))?.groups ?? []).flatMap((group: Yaml) => group?.rules ?? []);
      if (rules.length === 0) problems.push(`${name}: ${containerPath} holds no rules`);
      for (const rule of rules) {
        if (!rule?.alert || !rule?.expr) problems.push(`${name}: a rule in ${containerPath} lacks alert or expr`);
        for (const [metric] of String(rule?.expr ?? '').matchAll(/\bsumma_[a-z0-9_]+/g)) {
          if (!exported.has(metric)) problems.push(`${name}: alert ${rule.alert} uses ${metric}, which no service exports`);
        }
      }
    }
  }
  return problems;
}

/** The PostgreSQL services: replicas are those that depend on another PostgreSQL service, their primary. */
function postgresServices(stack: ComposeStack): { primaries: string[]; replicas: string[] } {
  const all = services(stack);
  const postgres = withImage(stack, IMAGES.postgres);
  const replicas = postgres.filter((name) => dependsOn(all[name]).some((other) => other !== name && postgres.includes(other)));
  return { primaries: postgres.filter((name) => !replicas.includes(name)), replicas };
}

/** Each Kafka service with the host:port listeners it advertises. */
function kafkaBrokers(stack: ComposeStack): Map<string, string[]> {
  const all = services(stack);
  return new Map(
    withImage(stack, IMAGES.kafka).map((name) => {
      const env = environment(all[name]);
      const advertised = (env.KAFKA_ADVERTISED_LISTENERS ?? env.KAFKA_CFG_ADVERTISED_LISTENERS ?? '')
        .split(',')
        .map((listener) => listener.replace(/^[A-Z_]+:\/\//, '').trim())
        .filter(Boolean);
      return [name, advertised];
    }),
  );
}

/**
 * The services reach PostgreSQL, Kafka and Tempo by their compose service names: DATABASE_URL
 * the primary, TOTALS_READ_DATABASE_URL (when set) a replica, KAFKA_BROKERS every broker.
 */
function checkConnections(stack: ComposeStack): string[] {
  const problems: string[] = [];
  const all = services(stack);
  const { primaries, replicas } = postgresServices(stack);
  const postgres = primaries[0];
  const brokers = kafkaBrokers(stack);
  const advertised = [...brokers.values()].flat();
  const tempo = withImage(stack, IMAGES.tempo);
  const postgresEnv = environment(postgres ? all[postgres] : undefined);
  const databaseUrl = (host: string | undefined) =>
    `postgres://${postgresEnv.POSTGRES_USER ?? 'postgres'}:${postgresEnv.POSTGRES_PASSWORD ?? ''}@${host}:5432/${postgresEnv.POSTGRES_DB ?? postgresEnv.POSTGRES_USER ?? 'postgres'}`;
  const leadsTo = (value: string) => {
    const database = parseUrl(value);
    return database && `postgres://${decodeURIComponent(database.username)}:${decodeURIComponent(database.password)}@${database.hostname}:${database.port || '5432'}${database.pathname}`;
  };
  for (const container of containersToCheck(stack, problems)) {
    const env = environment(all[container.name]);
    const got = env.DATABASE_URL === undefined ? undefined : leadsTo(env.DATABASE_URL);
    if (!got) {
      problems.push(`${container.name}: DATABASE_URL is ${env.DATABASE_URL === undefined ? 'not set' : 'not a URL'}`);
    } else {
      const wanted = databaseUrl(postgres);
      if (got !== wanted) problems.push(`${container.name}: DATABASE_URL does not lead to the compose PostgreSQL (${wanted.replace(/:[^:@/]*@/, ':…@')})`);
      if (postgres && !dependsOn(all[container.name]).includes(postgres)) problems.push(`${container.name} does not depend on ${postgres}`);
    }
    const read = env.TOTALS_READ_DATABASE_URL;
    if (read !== undefined) {
      const host = parseUrl(read)?.hostname ?? '';
      if (!replicas.includes(host) || leadsTo(read) !== databaseUrl(host)) {
        problems.push(`${container.name}: TOTALS_READ_DATABASE_URL does not lead to a compose PostgreSQL replica (${replicas.join(', ') || 'there is none'})`);
      } else if (!dependsOn(all[container.name]).includes(host)) {
        problems.push(`${container.name} does not depend on ${host}`);
      }
    }
    const needsKafka = container.service !== 'calculator';
    if (env.KAFKA_BROKERS === undefined) {
      if (needsKafka) problems.push(`${container.name}: KAFKA_BROKERS is not set`);
    } else {
      const named = env.KAFKA_BROKERS.split(',').map((item) => item.trim());
      for (const broker of named) {
        const host = broker.split(':')[0]!;
        if (!brokers.get(host)?.includes(broker)) problems.push(`${container.name}: KAFKA_BROKERS names ${broker}, not a listener a compose broker advertises (${advertised.join(', ')})`);
        else if (needsKafka && !dependsOn(all[container.name]).includes(host)) problems.push(`${container.name} does not depend on ${host}`);
      }
      // Any one broker may be down when a service starts: it bootstraps from the others.
      const unnamed = [...brokers.keys()].filter((broker) => !named.some((item) => item.startsWith(`${broker}:`)));
      if (unnamed.length > 0) problems.push(`${container.name}: KAFKA_BROKERS does not name ${unnamed.join(', ')}`);
    }
    const otlp = env.OTEL_EXPORTER_OTLP_ENDPOINT;
    if (otlp !== undefined && !tempo.includes(parseUrl(otlp)?.hostname ?? '')) problems.push(`${container.name}: OTEL_EXPORTER_OTLP_ENDPOINT ${otlp} is not Tempo`);
  }
  for (const name of withImage(stack, IMAGES.kafkaUi)) {
    const servers = environment(all[name]).KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS ?? '';
    if (!servers.split(',').some((server) => advertised.includes(server.trim()))) problems.push(`${name}: bootstrap servers ${JSON.stringify(servers)} are not the compose Kafka`);
  }
  return problems;
}

/** Grafana is provisioned: Prometheus, Loki and Tempo datasources on the compose services, and the dashboards mounted. */
function checkGrafana(stack: ComposeStack): string[] {
  const problems: string[] = [];
  const expectedHosts: Record<string, string[]> = {
    prometheus: withImage(stack, IMAGES.prometheus),
    loki: withImage(stack, IMAGES.loki),
    tempo: withImage(stack, IMAGES.tempo),
  };
  for (const name of withImage(stack, IMAGES.grafana)) {
    const service = services(stack)[name];
    const provisioning = mountedFrom(stack, service, '/etc/grafana/provisioning');
    if (!provisioning || !existsSync(provisioning)) {
      problems.push(`${name}: no provisioning directory mounted at /etc/grafana/provisioning`);
      continue;
    }
    const yamlFiles = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((file) => /\.ya?ml$/.test(file)).map((file) => path.join(dir, file)) : []);
    const datasources = yamlFiles(path.join(provisioning, 'datasources')).flatMap((file) => YAML.parse(stack.read(file))?.datasources ?? []);
    for (const [type, hosts] of Object.entries(expectedHosts)) {
      const found = datasources.filter((datasource: Yaml) => datasource?.type === type);
      if (found.length === 0) problems.push(`${name}: no ${type} datasource provisioned`);
      for (const datasource of found) {
        if (!hosts.includes(parseUrl(String(datasource?.url))?.hostname ?? '')) problems.push(`${name}: the ${type} datasource's url ${datasource?.url} is not a compose service running ${type}`);
      }
    }
    const providers = yamlFiles(path.join(provisioning, 'dashboards')).flatMap((file) => YAML.parse(stack.read(file))?.providers ?? []);
    if (providers.length === 0) problems.push(`${name}: no dashboard provider provisioned`);
    for (const provider of providers) {
      const dir = mountedFrom(stack, service, String(provider?.options?.path ?? ''));
      const dashboards = dir && existsSync(dir) ? readdirSync(dir).filter((file) => file.endsWith('.json')) : [];
      if (dashboards.length === 0) problems.push(`${name}: the dashboards provider reads ${provider?.options?.path}, where no dashboard is mounted`);
    }
    const home = environment(service).GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
    const homeFile = home ? mountedFrom(stack, service, home) : undefined;
    if (home && (!homeFile || !existsSync(homeFile))) problems.push(`${name}: the home dashboard ${home} is not mounted`);
  }
  return problems;
}

/** The log shipper pushes to Loki and picks up the Summa containers. */
function checkLogShipping(stack: ComposeStack): string[] {
  const problems: string[] = [];
  const loki = withImage(stack, IMAGES.loki);
  for (const name of withImage(stack, IMAGES.logShipper)) {
    const service = services(stack)[name];
    const configPath = (argv(service?.command) ?? []).map((arg) => /^-?-config\.file=(.+)$/.exec(arg)?.[1]).find(Boolean);
    const file = configPath ? mountedFrom(stack, service, configPath) : undefined;
    if (!file || !existsSync(file)) {
      problems.push(`${name}: its configuration is not mounted from the repository`);
      continue;
    }
    const text = stack.read(file);
    if (!loki.some((lokiName) => text.includes(`://${lokiName}:`))) problems.push(`${name}: its configuration does not push to ${loki.join(' or ') || 'Loki'}`);
    // Promtail's own configuration says which containers it ships.
    if (!String(service.image).includes('promtail')) continue;
    const config: Yaml = YAML.parse(text);
    for (const job of config?.scrape_configs ?? []) {
      for (const sd of job?.docker_sd_configs ?? []) {
        if (!mounts(service).some((mount) => mount.bind && String(sd?.host ?? '').endsWith(mount.target))) {
          problems.push(`${name}: reads containers from ${sd?.host}, which is not mounted`);
        }
        const labels = (sd?.filters ?? []).filter((filter: Yaml) => filter?.name === 'label').flatMap((filter: Yaml) => filter?.values ?? []);
        for (const container of containersToCheck(stack, problems)) {
          const own = services(stack)[container.name]?.labels ?? {};
          const carried = Array.isArray(own) ? own.map(String) : Object.entries(own).map(([key, value]) => `${key}=${value}`);
          if (labels.length > 0 && !labels.some((label: string) => carried.includes(label))) {
            problems.push(`${container.name} lacks the label ${labels.join(' or ')} that ${name} ships logs for`);
          }
        }
      }
    }
  }
  return problems;
}

/** Where the apache/kafka image keeps a broker's log when KAFKA_LOG_DIRS is not set (docker/resources/common-scripts/configureDefaults). */
const KAFKA_IMAGE_LOG_DIRS = '/tmp/kraft-combined-logs';

/**
 * Every broker keeps its log (records, and its KRaft metadata with the cluster id) on a volume: a
 * log in the container's own file system is gone when the container is recreated, and with it
 * every record the broker acknowledged.
 */
function checkKafkaStorage(stack: ComposeStack): string[] {
  const problems: string[] = [];
  for (const name of withImage(stack, IMAGES.kafka)) {
    const service = services(stack)[name];
    const env = environment(service);
    for (const dir of listOf(env.KAFKA_LOG_DIRS ?? env.KAFKA_CFG_LOG_DIRS ?? KAFKA_IMAGE_LOG_DIRS)) {
      const onVolume = mounts(service).some((mount) => {
        const target = mount.target.replace(/\/+$/, '');
        return dir === target || dir.startsWith(`${target}/`);
      });
      if (!onVolume) problems.push(`${name} keeps its log in ${dir}, which no volume holds${env.KAFKA_LOG_DIRS ? '' : ' (KAFKA_LOG_DIRS is not set)'}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// The cluster topology

/**
 * `count` KRaft brokers that form one cluster: distinct node ids, one CLUSTER_ID, every node with
 * the same quorum voters, and those voters exactly the controllers (id@service:controller port).
 * The brokers keep their own topics (consumer offsets) on three replicas, and the relays and
 * totals create the event topic with a replication factor the cluster can hold and a
 * min.insync.replicas that survives one broker down.
 */
function checkKafkaCluster(stack: ComposeStack, count = 3): string[] {
  const problems: string[] = [];
  const all = services(stack);
  const brokers = kafkaBrokers(stack);
  if (brokers.size !== count) problems.push(`${count} Kafka brokers expected, found ${brokers.size}: ${[...brokers.keys()].join(', ')}`);
  const ids = new Map<string, string>();
  const clusterIds = new Set<string>();
  const controllers: string[] = [];
  for (const [name, advertised] of brokers) {
    const env = environment(all[name]);
    const id = env.KAFKA_NODE_ID ?? env.KAFKA_CFG_NODE_ID;
    if (!id) problems.push(`${name}: KAFKA_NODE_ID is not set`);
    else if (ids.has(id)) problems.push(`${name} has KAFKA_NODE_ID ${id}, as ${ids.get(id)} has`);
    else ids.set(id, name);
    clusterIds.add(env.CLUSTER_ID ?? '(none)');
    for (const listener of advertised) if (!listener.startsWith(`${name}:`)) problems.push(`${name} advertises ${listener}, not a listener on its own name`);
    if (listOf(env.KAFKA_PROCESS_ROLES).includes('controller')) {
      const listenerName = listOf(env.KAFKA_CONTROLLER_LISTENER_NAMES)[0];
      const port = listOf(env.KAFKA_LISTENERS).map((listener) => new RegExp(`^${listenerName}://[^:]*:(\\d+)$`).exec(listener)?.[1]).find(Boolean);
      if (!port) problems.push(`${name}: KAFKA_LISTENERS has no ${listenerName ?? 'controller'} listener`);
      else controllers.push(`${id}@${name}:${port}`);
    }
    const offsets = Number(env.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR ?? 3);
    if (offsets !== Math.min(3, brokers.size)) problems.push(`${name}: KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR is ${offsets}, not ${Math.min(3, brokers.size)}`);
  }
  if (clusterIds.size > 1) problems.push(`the brokers do not share one CLUSTER_ID: ${[...clusterIds].join(', ')}`);
  if (controllers.length % 2 === 0) problems.push(`${controllers.length} controllers: a quorum needs an odd number`);
  const expected = [...controllers].sort().join(',');
  for (const name of brokers.keys()) {
    const voters = listOf(environment(all[name]).KAFKA_CONTROLLER_QUORUM_VOTERS).sort().join(',');
    if (voters !== expected) problems.push(`${name}: KAFKA_CONTROLLER_QUORUM_VOTERS is ${voters || '(not set)'}, not the controllers ${expected}`);
  }
  // A service that refuses its Kafka settings is left out of the containers: say why.
  problems.push(...summaContainers(stack).problems);
  for (const container of containersToCheck(stack, problems).filter((candidate) => candidate.service !== 'calculator')) {
    let config: ReturnType<typeof envKafkaConfig>;
    try {
      config = envKafkaConfig(environment(all[container.name]));
    } catch (error) {
      problems.push(`${container.name}: ${(error as Error).message}`);
      continue;
    }
    const { topicReplicationFactor: replicas, topicMinInsyncReplicas: minInsync } = config;
    if (replicas === undefined || replicas < Math.min(3, brokers.size) || replicas > brokers.size) {
      problems.push(`${container.name}: KAFKA_REPLICATION_FACTOR is ${replicas ?? 'not set'}, not ${Math.min(3, brokers.size)} on ${brokers.size} brokers`);
    } else if (minInsync === undefined || minInsync < 2 || minInsync >= replicas) {
      problems.push(`${container.name}: KAFKA_MIN_INSYNC_REPLICAS is ${minInsync ?? 'not set'}: an acknowledged event should be on 2 replicas, and writes go on with one broker down`);
    }
  }
  return problems;
}

/**
 * A PostgreSQL replica: it waits for its primary to be healthy, takes a base backup from it with
 * pg_basebackup, starts as a standby (-R), through the slot and as the role the primary's init
 * script creates, which also lets replication connections in.
 */
function checkReplica(stack: ComposeStack): string[] {
  const problems: string[] = [];
  const all = services(stack);
  const { primaries, replicas } = postgresServices(stack);
  if (replicas.length === 0) problems.push('no PostgreSQL replica: no postgres service depends on another');
  for (const replica of replicas) {
    const primary = dependsOn(all[replica]).find((name) => primaries.includes(name))!;
    if (all[replica]?.depends_on?.[primary]?.condition !== 'service_healthy') problems.push(`${replica} does not wait for ${primary} to be healthy`);
    const script = [...(argv(all[replica]?.entrypoint) ?? []), ...(argv(all[replica]?.command) ?? [])].join(' ');
    const option = (long: string, short: string) => new RegExp(`(?:^|\\s)(?:--${long}[= ]|-${short} ?)([^\\s;&|]+)`).exec(script)?.[1];
    if (!/\bpg_basebackup\b/.test(script)) {
      problems.push(`${replica} takes no base backup (pg_basebackup) of ${primary}`);
      continue;
    }
    if (option('host', 'h') !== primary) problems.push(`${replica} takes its base backup from ${option('host', 'h') ?? '(no --host)'}, not ${primary}`);
    if (!/(--write-recovery-conf|\s-R\b)/.test(script)) problems.push(`${replica} does not start as a standby of ${primary} (pg_basebackup --write-recovery-conf)`);
    const primaryEnv = environment(all[primary]);
    if (option('username', 'U') !== primaryEnv.REPLICATION_USER) problems.push(`${replica} connects as ${option('username', 'U')}, not the replication role ${primaryEnv.REPLICATION_USER ?? '(REPLICATION_USER not set on the primary)'}`);
    if (option('slot', 'S') !== primaryEnv.REPLICATION_SLOT) problems.push(`${replica} streams through slot ${option('slot', 'S')}, not ${primaryEnv.REPLICATION_SLOT ?? '(REPLICATION_SLOT not set on the primary)'}`);
    const init = mounts(all[primary]).filter((mount) => mount.bind && mount.target.startsWith('/docker-entrypoint-initdb.d/'));
    const texts = init.map((mount) => path.resolve(stack.dir, mount.source)).filter(existsSync).map((file) => stack.read(file));
    if (!texts.some((text) => /host\s+replication\b/.test(text) && text.includes('pg_create_physical_replication_slot') && /\bREPLICATION\b/.test(text))) {
      problems.push(`${primary}: no init script in /docker-entrypoint-initdb.d creates the replication role and slot and admits replication in pg_hba.conf`);
    }
  }
  return problems;
}

/**
 * The number of each service: `relays` relays (any number works, they share the outbox through
 * leases) and `totals` totals services, never more in one consumer group than the topic has
 * partitions, since the group gives each partition to one member and the rest would sit idle.
 */
function checkScaling(stack: ComposeStack, expected: { relay: number; totals: number }): string[] {
  const problems: string[] = [];
  const all = services(stack);
  for (const service of ['relay', 'totals'] as const) {
    const found = ofService(stack, service);
    if (found.length !== expected[service]) problems.push(`${expected[service]} ${service} services expected, found ${found.length}`);
  }
  const groups = new Map<string, { members: string[]; partitions: number }>();
  for (const container of ofService(stack, 'totals')) {
    let partitions: number;
    try {
      partitions = envKafkaConfig(environment(all[container.name])).topicPartitions;
    } catch (error) {
      problems.push(`${container.name}: ${(error as Error).message}`);
      continue;
    }
    const group = groups.get(container.settings.groupId ?? '') ?? { members: [], partitions };
    group.members.push(container.name);
    group.partitions = Math.min(group.partitions, partitions);
    groups.set(container.settings.groupId ?? '', group);
  }
  for (const [groupId, { members, partitions }] of groups) {
    if (members.length > partitions) problems.push(`${members.length} totals services in consumer group ${groupId} but ${partitions} partitions: ${members.length - partitions} would sit idle`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------

/** Durations as compose writes them ("35s", "1m30s", "500ms"), in ms. */
function durationMs(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value) return undefined;
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
  return parts.reduce((sum, [, amount, u]) => sum + Number(amount) * unit[u as keyof typeof unit], 0);
}

/**
 * Each Summa container has a health check on /readyz of its own HTTP port, is given longer than its
 * graceful stop before it is killed, and nginx waits for the calculators to be healthy.
 */
function checkHealthAndStop(stack: ComposeStack, behindNginx: ServiceName[] = ['calculator']): string[] {
  const problems: string[] = [];
  const all = services(stack);
  for (const { name, settings } of containersToCheck(stack, problems)) {
    const service = all[name];
    const test = (argv(service?.healthcheck?.test) ?? []).join(' ');
    if (!test.includes(`127.0.0.1:${settings.ports.http}/readyz`)) problems.push(`${name}: no health check on /readyz of its HTTP port ${settings.ports.http}`);
    const grace = durationMs(service?.stop_grace_period) ?? 10_000; // compose's default
    if (grace <= settings.shutdownTimeoutMs) {
      problems.push(`${name}: stop_grace_period ${grace} ms does not exceed its graceful stop (SHUTDOWN_TIMEOUT_MS ${settings.shutdownTimeoutMs} ms)`);
    }
  }
  const nginxDepends = all.nginx?.depends_on;
  for (const service of behindNginx) {
    for (const { name } of containersToCheck(stack, problems, service)) {
      if (nginxDepends?.[name]?.condition !== 'service_healthy') problems.push(`nginx does not wait for ${name} to be healthy`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Change data capture

const DEBEZIUM_CONNECT_IMAGE = /^quay\.io\/debezium\/connect:(.+)$/;

/**
 * The CDC stack: no relay; every calculator in RELAY_MODE=debezium; PostgreSQL 18 or later (the
 * publication carries generated columns) with wal_level=logical; a Kafka Connect worker on the
 * official Debezium image at the version `npm start -- --relay debezium` resolves, bootstrapping
 * from the compose Kafka; and a one-shot service that PUTs a connector config which is
 * outboxConnectorConfig() for the calculators' database and slot, once the worker and the
 * calculators (which make the publication) are healthy.
 */
function checkCdc(stack: ComposeStack): string[] {
  const problems: string[] = [];
  const all = services(stack);
  const { containers } = summaContainers(stack);
  for (const relay of containers.filter((c) => c.service === 'relay')) problems.push(`${relay.name}: a relay service runs beside change data capture`);
  const calculators = containers.filter((c) => c.service === 'calculator');
  if (calculators.length === 0) problems.push('no calculator');
  const slots = new Set<string>();
  for (const { name } of calculators) {
    const env = environment(all[name]);
    if (env.RELAY_MODE !== 'debezium') problems.push(`${name}: RELAY_MODE is ${env.RELAY_MODE ?? 'not set'}, not debezium`);
    slots.add(env.CAPTURE_SLOT_NAME ?? OUTBOX_CAPTURE_SLOT);
  }
  if (slots.size > 1) problems.push(`the calculators watch different slots: ${[...slots].join(', ')}`);

  const { primaries } = postgresServices(stack);
  const postgres = primaries[0];
  if (!postgres) problems.push('no PostgreSQL');
  for (const name of primaries) {
    const service = all[name];
    const major = Number(/:(\d+)/.exec(String(service.image))?.[1]);
    if (!(major >= 18)) problems.push(`${name}: ${service.image} is older than PostgreSQL 18, which the outbox's publication needs (generated columns)`);
    const command = (argv(service.command) ?? []).join(' ');
    if (!/(^|\s)(-c\s+|--)wal_level=logical(\s|$)/.test(command)) problems.push(`${name} does not run with wal_level=logical`);
  }

  const pomVersion = /<debezium\.version>([^<]+)<\/debezium\.version>/.exec(stack.read(CONNECT_POM))?.[1];
  const connectImages = Object.entries(all).filter(([, service]) => DEBEZIUM_CONNECT_IMAGE.test(String(service?.image ?? '')));
  for (const [name, service] of connectImages) {
    const tag = DEBEZIUM_CONNECT_IMAGE.exec(String(service.image))![1];
    if (tag !== pomVersion) problems.push(`${name}: ${service.image} is not Debezium ${pomVersion}, which tools/local-stack/kafka-connect/pom.xml resolves`);
  }
  const workers = connectImages.filter(([, service]) => environment(service).BOOTSTRAP_SERVERS !== undefined).map(([name]) => name);
  if (workers.length !== 1) problems.push(`one Kafka Connect worker expected, found ${workers.length}`);
  const worker = workers[0];
  if (worker) {
    const env = environment(all[worker]);
    const advertised = [...kafkaBrokers(stack).values()].flat();
    for (const server of listOf(env.BOOTSTRAP_SERVERS)) if (!advertised.includes(server)) problems.push(`${worker}: BOOTSTRAP_SERVERS names ${server}, not a compose broker`);
    for (const name of ['GROUP_ID', 'CONFIG_STORAGE_TOPIC', 'OFFSET_STORAGE_TOPIC', 'STATUS_STORAGE_TOPIC']) if (!env[name]) problems.push(`${worker}: ${name} is not set`);
    if (!(argv(all[worker].healthcheck?.test) ?? []).join(' ').includes(':8083/connectors')) problems.push(`${worker}: no health check on its REST API's /connectors`);
  }

  const registrations = Object.entries(all).filter(([, service]) => (argv(service?.entrypoint) ?? []).concat(argv(service?.command) ?? []).some((arg) => /\/connectors\/[^/]+\/config$/.test(arg)));
  if (registrations.length !== 1) problems.push(`one service that registers the connector expected, found ${registrations.length}`);
  for (const [name, service] of registrations) {
    const args = (argv(service.entrypoint) ?? []).concat(argv(service.command) ?? []);
    const url = parseUrl(args.find((arg) => /\/connectors\/[^/]+\/config$/.test(arg)));
    if (!url || url.hostname !== worker || url.port !== '8083') problems.push(`${name} registers the connector at ${url?.host}, not ${worker}:8083`);
    if (!args.includes('PUT')) problems.push(`${name} does not PUT the connector's config (a PUT creates or updates it, so a rerun is harmless)`);
    const depends = service.depends_on ?? {};
    for (const needed of [worker, ...calculators.map((c) => c.name)]) {
      if (needed && depends[needed]?.condition !== 'service_healthy') problems.push(`${name} does not wait for ${needed} to be healthy`);
    }
    const data = args.find((arg) => arg.startsWith('@'))?.slice(1);
    const file = data && mountedFrom(stack, service, data);
    if (!file || !existsSync(file)) {
      problems.push(`${name} sends ${data ?? 'no file'}, which no bind mount of the repository provides`);
      continue;
    }
    const databaseUrl = calculators[0] && parseUrl(environment(all[calculators[0].name]).DATABASE_URL);
    if (!databaseUrl) continue;
    const expected = outboxConnectorConfig({
      database: {
        host: databaseUrl.hostname,
        port: Number(databaseUrl.port || 5432),
        user: decodeURIComponent(databaseUrl.username),
        password: decodeURIComponent(databaseUrl.password),
        name: databaseUrl.pathname.slice(1),
      },
      slotName: [...slots][0] ?? OUTBOX_CAPTURE_SLOT,
    });
    const actual: unknown = JSON.parse(stack.read(file));
    try {
      assert.deepStrictEqual(actual, expected);
    } catch {
      problems.push(
        `${name}: ${path.relative(root, file)} is not outboxConnectorConfig() for the calculators' database and slot; write it again with:\n` +
          JSON.stringify(expected, null, 2),
      );
    }
  }
  return problems;
}

function assertClean(problems: string[]): void {
  assert.deepEqual(problems, [], `expected no problems, got:${describeProblems(problems)}`);
}

function assertCaught(problems: string[], expected: RegExp): void {
  assert.ok(problems.some((problem) => expected.test(problem)), `expected a problem matching ${expected}, got:${describeProblems(problems)}`);
}

describe('docker compose stack', () => {
  it('docker-compose accepts the file (config -q)', { skip: missingTool('docker-compose') }, () => {
    assertClean(checkComposeConfig({ file: COMPOSE_FILE }));
  });

  it('docker-compose config -q fails on an invalid file', { skip: missingTool('docker-compose') }, () => {
    const text = readFileSync(COMPOSE_FILE, 'utf8');
    assertClean(checkComposeConfig({ text }));
    assert.match(text, /^ {2}relay:\n/m);
    assertCaught(checkComposeConfig({ text: text.replace(/^ {2}relay:\n/m, '  relay:\n    no_such_option: true\n') }), /exited 1.*no_such_option/s);
  });

  it('has every service: Kafka (KRaft), PostgreSQL, three calculators behind nginx, relay, totals, Prometheus, Grafana, Loki and a log shipper, Tempo, kafka-ui', () => {
    const stack = loadStack();
    assertClean(checkRequiredServices(stack));
    assert.deepEqual(ofService(stack, 'calculator').map((c) => c.name).sort(), ['calculator-1', 'calculator-2', 'calculator-3']);
  });

  it('the required-services check fails when a service is missing or wrong', () => {
    assertCaught(checkRequiredServices(changedStack((s) => delete s.tempo)), /^Tempo: no service/);
    assertCaught(checkRequiredServices(changedStack((s) => delete s.promtail)), /^a log shipper for Loki: no service/);
    assertCaught(checkRequiredServices(changedStack((s) => delete s['kafka-ui'])), /^kafka-ui: no service/);
    assertCaught(checkRequiredServices(changedStack((s) => delete s['calculator-3'])), /three calculator instances expected, found 2/);
    assertCaught(checkRequiredServices(changedStack((s) => (s.relay.command = ['dist/relay/mian.js']))), /relay runs "dist\/relay\/mian.js"/);
    assertCaught(checkRequiredServices(changedStack((s) => (s.totals.command = ['node', 'dist/totals/main.js']))), /totals runs .*not the image's entrypoint/);
    assertCaught(checkRequiredServices(changedStack((s) => (s.kafka.environment = { ...s.kafka.environment, KAFKA_PROCESS_ROLES: 'broker' }))), /not in KRaft mode/);
    assertCaught(checkRequiredServices(changedStack((s) => (s.nginx.depends_on = ['calculator-1', 'calculator-2']))), /nginx does not depend on calculator-3/);
    assertCaught(
      checkRequiredServices(changedStack((s) => (s['calculator-2'].environment = { ...s['calculator-2'].environment, CALCULATOR_GRPC_PORT: '90900' }))),
      /calculator-2: the calculator service refuses its environment: CALCULATOR_GRPC_PORT/,
    );
  });

  it('every file and directory it mounts from the repository exists', () => {
    assertClean(checkMounts(loadStack()));
  });

  it('the mount check fails on a missing file, a missing config file or a missing Dockerfile', () => {
    assertCaught(checkMounts(changedStack((s) => (s.nginx.volumes = ['./nginx.missing.conf:/etc/nginx/nginx.conf:ro']))), /nginx mounts \.\/nginx\.missing\.conf .*does not exist/);
    assertCaught(checkMounts(changedStack((s) => (s.grafana.volumes = ['../grafana/provisionin:/etc/grafana/provisioning:ro']))), /grafana mounts .*provisionin .*does not exist/);
    assertCaught(checkMounts(changedStack((s) => (s.loki.volumes = ['loki-data:/loki']))), /loki reads \/etc\/loki\/loki\.yml, which no bind mount provides/);
    assertCaught(checkMounts(changedStack((s) => (s.relay.build = { context: '../..', dockerfile: 'deploy/docker/Dockerfile.missing' }))), /relay builds deploy\/docker\/Dockerfile\.missing/);
  });

  it('every Kafka broker keeps its log on a volume, in both compose files', () => {
    assertClean([...checkKafkaStorage(loadStack()), ...checkKafkaStorage(loadStack(CLUSTER_FILE))]);
  });

  it('the Kafka storage check fails on a log outside the volume', () => {
    assertCaught(checkKafkaStorage(changedStack((s) => delete s.kafka.environment.KAFKA_LOG_DIRS)), /kafka keeps its log in \/tmp\/kraft-combined-logs, which no volume holds \(KAFKA_LOG_DIRS is not set\)/);
    assertCaught(checkKafkaStorage(changedStack((s) => (s['kafka-2'].volumes = []), {}, CLUSTER_FILE)), /kafka-2 keeps its log in \/var\/lib\/kafka\/data, which no volume holds/);
  });

  it("nginx's upstreams name all three calculators, for gRPC and for HTTP", () => {
    assertClean(checkNginx(loadStack()));
  });

  it('the nginx check fails when a calculator or a port is missing', () => {
    const conf = 'deploy/compose/nginx.conf';
    assertCaught(checkNginx(changedStack(() => {}, { [conf]: (text) => text.replace(/server calculator-3:9090[^;]*;/, '') })), /upstream calculators_grpc \(grpc\) lacks calculator-3:9090/);
    assertCaught(checkNginx(changedStack(() => {}, { [conf]: (text) => text.replace('server calculator-2:8090 ', 'server calculator-2:9090 ') })), /calculators_http \(http\) lacks calculator-2:8090/);
    assertCaught(checkNginx(changedStack(() => {}, { [conf]: (text) => text.replace('grpc://calculators_grpc', 'grpc://calculators') })), /grpc_pass grpc:\/\/calculators names no upstream/);
    assertCaught(checkNginx(changedStack(() => {}, { [conf]: (text) => text.replace('listen 9090 http2;', 'listen 9090;') })), /does not speak HTTP\/2/);
    assertCaught(checkNginx(changedStack((s) => (s.nginx.ports = ['9090:9090']))), /does not publish the calculators' http port 8090/);
    assertCaught(
      checkNginx(changedStack((s) => (s['calculator-1'].environment = { ...s['calculator-1'].environment, CALCULATOR_HTTP_PORT: '8190' }))),
      /calculators_http \(http\) has calculator-1:8090, which is no calculator's http port/,
    );
  });

  it('nginx takes a failing upstream out (max_fails, fail_timeout) and never resends a POST that reached one', () => {
    assertClean(checkNginxRetries(loadStack()));
  });

  it('the nginx retry check fails on a missing passive health check, an unknown condition or non_idempotent', () => {
    const conf = 'deploy/compose/nginx.conf';
    assertCaught(
      checkNginxRetries(changedStack(() => {}, { [conf]: (text) => text.replace('server calculator-2:8090 max_fails=2 fail_timeout=10s;', 'server calculator-2:8090;') })),
      /upstream calculators_http server calculator-2:8090 sets no max_fails/,
    );
    assertCaught(checkNginxRetries(changedStack(() => {}, { [conf]: (text) => text.replace(/max_fails=2/, 'max_fails=0') })), /calculator-1:9090 has max_fails=0/);
    assertCaught(
      checkNginxRetries(changedStack(() => {}, { [conf]: (text) => text.replace('grpc_next_upstream error timeout;', 'grpc_next_upstream error timeout unavailable;') })),
      /grpc_next_upstream unavailable is no condition nginx knows/,
    );
    assertCaught(
      checkNginxRetries(changedStack(() => {}, { [conf]: (text) => text.replace('proxy_next_upstream error timeout', 'proxy_next_upstream error timeout non_idempotent') })),
      /proxy_next_upstream non_idempotent resends an Add/,
    );
  });

  it('every Summa container has a health check and more time to stop than its graceful stop takes', () => {
    assertClean(checkHealthAndStop(loadStack()));
  });

  it('the health-and-stop check fails on a missing health check, a short grace period or nginx not waiting', () => {
    assertCaught(checkHealthAndStop(changedStack((s) => delete s.relay.healthcheck)), /relay: no health check/);
    assertCaught(checkHealthAndStop(changedStack((s) => (s.totals.stop_grace_period = '20s'))), /totals: stop_grace_period 20000 ms does not exceed/);
    assertCaught(checkHealthAndStop(changedStack((s) => delete s.totals.stop_grace_period)), /totals: stop_grace_period 10000 ms/);
    assertCaught(
      checkHealthAndStop(changedStack((s) => (s.totals.environment = { ...s.totals.environment, SHUTDOWN_TIMEOUT_MS: '60000' }))),
      /totals: stop_grace_period 35000 ms does not exceed its graceful stop \(SHUTDOWN_TIMEOUT_MS 60000 ms\)/,
    );
    assertCaught(checkHealthAndStop(changedStack((s) => (s.nginx.depends_on = ['calculator-1', 'calculator-2', 'calculator-3']))), /nginx does not wait for calculator-1/);
  });

  it('Prometheus scrapes every calculator, the relay and totals on their HTTP ports', () => {
    assertClean(checkPrometheus(loadStack()));
  });

  it('Prometheus loads the alert rules, mounted from the repository, over metrics the services export', () => {
    for (const file of [COMPOSE_FILE, CLUSTER_FILE, CDC_FILE]) assertClean(checkAlertRules(loadStack(file)));
  });

  it('the alert rule check fails on an unmounted rule file or a misspelt metric', () => {
    const rules = 'deploy/compose/alerts.yml';
    assertCaught(checkAlertRules(changedStack(() => {}, { [rules]: (text) => text.replace('summa_outbox_dedup_window_seconds', 'summa_outbox_dedup_window') })), /uses summa_outbox_dedup_window, which no service exports/);
    assertCaught(
      checkAlertRules(changedStack((s) => (s.prometheus.volumes = s.prometheus.volumes.filter((v: string) => !v.includes('alerts.yml'))))),
      /\/etc\/prometheus\/alerts\.yml \(rule_files\) is not mounted/,
    );
  });

  it('the Prometheus check fails when a target is missing or on the wrong port', () => {
    const conf = 'deploy/compose/prometheus.yml';
    assertCaught(checkPrometheus(changedStack(() => {}, { [conf]: (text) => text.replace('"relay:8091"', '"relay:9091"') })), /does not scrape relay:8091/);
    assertCaught(checkPrometheus(changedStack(() => {}, { [conf]: (text) => text.replace(', "calculator-3:8090"', '') })), /does not scrape calculator-3:8090/);
    assertCaught(checkPrometheus(changedStack(() => {}, { [conf]: (text) => text.replace('"calculator-2:8090"', '"calculator-2:9090"') })), /does not scrape calculator-2:8090/);
    assertCaught(checkPrometheus(changedStack((s) => (s.totals.environment = { ...s.totals.environment, TOTALS_HTTP_PORT: '8180' }))), /does not scrape totals:8180/);
  });

  it('the services get DATABASE_URL and KAFKA_BROKERS pointing at the compose postgres and kafka', () => {
    assertClean(checkConnections(loadStack()));
  });

  it('the connection check fails on a wrong host, port or credentials', () => {
    const set = (service: string, name: string, value: string | undefined) =>
      changedStack((s) => {
        s[service].environment = { ...s[service].environment, [name]: value };
        if (value === undefined) delete s[service].environment[name];
      });
    assertCaught(checkConnections(set('calculator-2', 'DATABASE_URL', 'postgres://summa:summa@localhost:5432/summa')), /calculator-2: DATABASE_URL does not lead/);
    assertCaught(checkConnections(set('relay', 'DATABASE_URL', 'postgres://summa:secret@postgres:5432/summa')), /relay: DATABASE_URL does not lead/);
    assertCaught(checkConnections(set('totals', 'DATABASE_URL', undefined)), /totals: DATABASE_URL is not set/);
    assertCaught(checkConnections(set('totals', 'KAFKA_BROKERS', 'kafka:9093')), /totals: KAFKA_BROKERS names kafka:9093/);
    assertCaught(checkConnections(set('relay', 'KAFKA_BROKERS', undefined)), /relay: KAFKA_BROKERS is not set/);
    assertCaught(checkConnections(set('relay', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'http://loki:4318')), /is not Tempo/);
  });

  it('Grafana is provisioned with Prometheus, Loki and Tempo and the Summa dashboard', () => {
    assertClean(checkGrafana(loadStack()));
  });

  it('the Grafana check fails when a datasource or the dashboards are missing', () => {
    const datasources = 'deploy/grafana/provisioning/datasources/datasources.yml';
    assertCaught(checkGrafana(changedStack(() => {}, { [datasources]: (text) => text.replace('http://tempo:3200', 'http://localhost:3200') })), /tempo datasource's url/);
    assertCaught(checkGrafana(changedStack(() => {}, { [datasources]: (text) => text.replace('type: loki', 'type: elasticsearch') })), /no loki datasource/);
    assertCaught(checkGrafana(changedStack((s) => (s.grafana.volumes = [s.grafana.volumes[0]]))), /the dashboards provider reads \/var\/lib\/grafana\/dashboards, where no dashboard/);
  });

  it('the log shipper pushes to Loki and picks up the Summa containers', () => {
    assertClean(checkLogShipping(loadStack()));
  });

  it('the log-shipping check fails when the shipper misses Loki or a container', () => {
    assertCaught(checkLogShipping(changedStack(() => {}, { 'deploy/compose/promtail.yml': (text) => text.replace('http://loki:3100', 'http://logs:3100') })), /does not push to loki/);
    assertCaught(checkLogShipping(changedStack((s) => (s.totals.labels = {}))), /totals lacks the label logging=promtail/);
    assertCaught(checkLogShipping(changedStack((s) => (s.promtail.volumes = [s.promtail.volumes[0]]))), /reads containers from unix:\/\/\/var\/run\/docker.sock, which is not mounted/);
  });
});

describe('docker compose cluster stack (docker-compose.cluster.yml)', () => {
  const cluster = (change: (services: Record<string, Yaml>) => void = () => {}, files: Record<string, (text: string) => string> = {}) => changedStack(change, files, CLUSTER_FILE);
  const setEnv = (service: Yaml, values: Record<string, string | undefined>) => {
    service.environment = { ...service.environment, ...values };
    for (const [name, value] of Object.entries(values)) if (value === undefined) delete service.environment[name];
  };

  it('docker-compose accepts the file (config -q)', { skip: missingTool('docker-compose') }, () => {
    assertClean(checkComposeConfig({ file: CLUSTER_FILE }));
  });

  it('has every service of the single-node stack, each with a health check, its mounts, metrics, logs and traces', () => {
    const stack = loadStack(CLUSTER_FILE);
    assertClean([
      ...checkRequiredServices(stack),
      ...checkMounts(stack),
      ...checkHealthAndStop(stack, ['calculator', 'totals']),
      ...checkPrometheus(stack),
      ...checkConnections(stack),
      ...checkGrafana(stack),
      ...checkLogShipping(stack),
    ]);
  });

  it('runs three KRaft brokers as one cluster, and the event topic on three replicas with min.insync.replicas 2', () => {
    assertClean(checkKafkaCluster(loadStack(CLUSTER_FILE)));
    assert.deepEqual([...kafkaBrokers(loadStack(CLUSTER_FILE)).keys()], ['kafka-1', 'kafka-2', 'kafka-3']);
  });

  it('the Kafka cluster check fails on a missing broker, a shared node id, wrong voters or a weak topic', () => {
    assertCaught(checkKafkaCluster(cluster((s) => delete s['kafka-3'])), /3 Kafka brokers expected, found 2/);
    assertCaught(checkKafkaCluster(cluster((s) => setEnv(s['kafka-2'], { KAFKA_NODE_ID: '1' }))), /kafka-2 has KAFKA_NODE_ID 1, as kafka-1 has/);
    assertCaught(
      checkKafkaCluster(cluster((s) => setEnv(s['kafka-3'], { KAFKA_CONTROLLER_QUORUM_VOTERS: '1@kafka-1:9093,2@kafka-2:9093' }))),
      /kafka-3: KAFKA_CONTROLLER_QUORUM_VOTERS is 1@kafka-1:9093,2@kafka-2:9093, not the controllers 1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093/,
    );
    assertCaught(checkKafkaCluster(cluster((s) => setEnv(s['kafka-1'], { KAFKA_LISTENERS: 'PLAINTEXT://:9092,CONTROLLER://:9094' }))), /kafka-2: KAFKA_CONTROLLER_QUORUM_VOTERS .* not the controllers 1@kafka-1:9094/);
    assertCaught(checkKafkaCluster(cluster((s) => setEnv(s['kafka-2'], { CLUSTER_ID: 'another' }))), /do not share one CLUSTER_ID/);
    assertCaught(checkKafkaCluster(cluster((s) => setEnv(s['kafka-3'], { KAFKA_ADVERTISED_LISTENERS: 'PLAINTEXT://kafka-1:9092' }))), /kafka-3 advertises kafka-1:9092/);
    assertCaught(checkKafkaCluster(cluster((s) => setEnv(s['kafka-1'], { KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1' }))), /kafka-1: KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR is 1, not 3/);
    assertCaught(checkKafkaCluster(cluster((s) => setEnv(s['relay-2'], { KAFKA_REPLICATION_FACTOR: undefined }))), /relay-2: KAFKA_REPLICATION_FACTOR is not set/);
    assertCaught(checkKafkaCluster(cluster((s) => setEnv(s['totals-1'], { KAFKA_MIN_INSYNC_REPLICAS: '1' }))), /totals-1: KAFKA_MIN_INSYNC_REPLICAS is 1/);
    assertCaught(checkKafkaCluster(cluster((s) => setEnv(s['totals-3'], { KAFKA_MIN_INSYNC_REPLICAS: '3' }))), /totals-3: KAFKA_MIN_INSYNC_REPLICAS is 3/);
    assertCaught(checkKafkaCluster(cluster((s) => setEnv(s['totals-2'], { KAFKA_MIN_INSYNC_REPLICAS: '4' }))), /totals-2: .*KAFKA_MIN_INSYNC_REPLICAS \(4\) must not exceed KAFKA_REPLICATION_FACTOR/);
  });

  it('the services bootstrap from every broker, write to the primary and the totals read the replica', () => {
    assertClean(checkConnections(loadStack(CLUSTER_FILE)));
  });

  it('the connection check fails on a broker left out, a read from the primary or a missing dependency', () => {
    assertCaught(checkConnections(cluster((s) => setEnv(s['relay-1'], { KAFKA_BROKERS: 'kafka-1:9092,kafka-2:9092' }))), /relay-1: KAFKA_BROKERS does not name kafka-3/);
    assertCaught(
      checkConnections(cluster((s) => setEnv(s['totals-2'], { TOTALS_READ_DATABASE_URL: 'postgres://summa:summa@postgres-primary:5432/summa' }))),
      /totals-2: TOTALS_READ_DATABASE_URL does not lead to a compose PostgreSQL replica \(postgres-replica\)/,
    );
    assertCaught(checkConnections(cluster((s) => setEnv(s['calculator-1'], { DATABASE_URL: 'postgres://summa:summa@postgres-replica:5432/summa' }))), /calculator-1: DATABASE_URL does not lead/);
    assertCaught(
      checkConnections(cluster((s) => (s['totals-3'].depends_on = { ...s['totals-3'].depends_on, 'postgres-replica': undefined }) && delete s['totals-3'].depends_on['postgres-replica'])),
      /totals-3 does not depend on postgres-replica/,
    );
  });

  it('runs a PostgreSQL streaming replica of the primary, initialised by pg_basebackup', () => {
    assertClean(checkReplica(loadStack(CLUSTER_FILE)));
  });

  it('the replica check fails without a replica, a base backup of the primary, the standby settings or the slot', () => {
    const entrypoint = (edit: (script: string) => string) => (s: Record<string, Yaml>) => (s['postgres-replica'].entrypoint = s['postgres-replica'].entrypoint.map((part: string) => edit(part)));
    assertCaught(checkReplica(cluster((s) => delete s['postgres-replica'])), /no PostgreSQL replica/);
    assertCaught(checkReplica(cluster((s) => (s['postgres-replica'].depends_on = ['postgres-primary']))), /postgres-replica does not wait for postgres-primary to be healthy/);
    assertCaught(checkReplica(cluster(entrypoint((script) => script.replace(/pg_basebackup/g, 'pg_dump')))), /postgres-replica takes no base backup/);
    assertCaught(checkReplica(cluster(entrypoint((script) => script.replace('--host=postgres-primary', '--host=postgres')))), /takes its base backup from postgres, not postgres-primary/);
    assertCaught(checkReplica(cluster(entrypoint((script) => script.replace(' --write-recovery-conf', '')))), /does not start as a standby/);
    assertCaught(checkReplica(cluster(entrypoint((script) => script.replace('--slot=replica_1', '--slot=replica_2')))), /streams through slot replica_2, not replica_1/);
    assertCaught(checkReplica(cluster((s) => setEnv(s['postgres-primary'], { REPLICATION_USER: 'replication' }))), /connects as replicator, not the replication role replication/);
    assertCaught(
      checkReplica(cluster(() => {}, { 'deploy/compose/postgres-primary-init.sh': (text) => text.replace(/^echo "host replication.*$/m, '') })),
      /postgres-primary: no init script .* admits replication in pg_hba.conf/,
    );
  });

  it('nginx fronts exactly the three calculators (gRPC 9090, HTTP 8090) and the three totals (8080), with passive health checks and safe retries', () => {
    const stack = loadStack(CLUSTER_FILE);
    assertClean([...checkNginx(stack, [...CALCULATORS_FRONTED, TOTALS_FRONTED]), ...checkNginxRetries(stack)]);
  });

  it('the nginx check fails when an upstream misses a totals service or names one that does not exist', () => {
    const conf = 'deploy/compose/nginx.cluster.conf';
    const fronts = [...CALCULATORS_FRONTED, TOTALS_FRONTED];
    assertCaught(checkNginx(cluster(() => {}, { [conf]: (text) => text.replace(/server totals-2:8080[^;]*;/, '') }), fronts), /upstream totals_http \(http\) lacks totals-2:8080/);
    assertCaught(checkNginx(cluster((s) => delete s['totals-3']), fronts), /upstream totals_http \(http\) has totals-3:8080, which is no totals service's http port/);
    assertCaught(checkNginx(cluster((s) => delete s['calculator-2']), fronts), /upstream calculators_grpc \(grpc\) has calculator-2:9090/);
    assertCaught(checkNginx(cluster((s) => (s.nginx.ports = ['9090:9090', '8090:8090'])), fronts), /does not publish the totals services' http port 8080/);
    assertCaught(checkHealthAndStop(cluster((s) => delete s.nginx.depends_on['totals-1']), ['calculator', 'totals']), /nginx does not wait for totals-1/);
  });

  it('runs two relays and three totals services, no more in the consumer group than the topic has partitions', () => {
    assertClean(checkScaling(loadStack(CLUSTER_FILE), { relay: 2, totals: 3 }));
  });

  it('the scaling check fails on more totals services than partitions', () => {
    const fewerPartitions = cluster((s) => {
      for (const name of ['totals-1', 'totals-2', 'totals-3']) setEnv(s[name], { KAFKA_TOPIC_PARTITIONS: '2' });
    });
    assertCaught(checkScaling(fewerPartitions, { relay: 2, totals: 3 }), /3 totals services in consumer group summa-totals but 2 partitions: 1 would sit idle/);
    assertCaught(checkScaling(cluster((s) => delete s['relay-2']), { relay: 2, totals: 3 }), /2 relay services expected, found 1/);
  });
});

describe('docker compose CDC stack (docker-compose.cdc.yml)', () => {
  const cdc = (change: (services: Record<string, Yaml>) => void = () => {}, files: Record<string, (text: string) => string> = {}) => changedStack(change, files, CDC_FILE);
  const setEnv = (service: Yaml, values: Record<string, string | undefined>) => {
    service.environment = { ...service.environment, ...values };
    for (const [name, value] of Object.entries(values)) if (value === undefined) delete service.environment[name];
  };
  const connectorJson = 'deploy/compose/cdc/summa-outbox.json';
  const editJson = (edit: (config: Record<string, string>) => void) => (text: string) => {
    const config = JSON.parse(text) as Record<string, string>;
    edit(config);
    return JSON.stringify(config);
  };

  it('docker-compose accepts the file (config -q)', { skip: missingTool('docker-compose') }, () => {
    assertClean(checkComposeConfig({ file: CDC_FILE }));
  });

  it('each Summa container has its health check, mounts, connections and metrics', () => {
    const stack = loadStack(CDC_FILE);
    assertClean([...checkMounts(stack), ...checkConnections(stack), ...checkHealthAndStop(stack, []), ...checkPrometheus(stack), ...checkKafkaStorage(stack)]);
  });

  it('captures instead of relaying: Debezium on PostgreSQL 18 with wal_level=logical, and the connector registered as npm start registers it', () => {
    assertClean(checkCdc(loadStack(CDC_FILE)));
  });

  it("the connector's config in compose is outboxConnectorConfig()'s, byte for byte in meaning", () => {
    const stack = loadStack(CDC_FILE);
    const file = path.join(root, connectorJson);
    assert.deepStrictEqual(
      JSON.parse(readFileSync(file, 'utf8')),
      outboxConnectorConfig({ database: { host: 'postgres', port: 5432, user: 'summa', password: 'summa', name: 'summa' } }),
    );
    assert.equal(environment(services(stack).calculator).DATABASE_URL, 'postgres://summa:summa@postgres:5432/summa');
  });

  it('the CDC check fails on a relay, a poller calculator, an old or non-logical PostgreSQL, another Debezium, or a connector config of its own', () => {
    assertCaught(checkCdc(cdc((s) => (s.relay = { ...s.totals, command: ['dist/relay/main.js'] }))), /relay: a relay service runs beside change data capture/);
    assertCaught(checkCdc(cdc((s) => setEnv(s.calculator, { RELAY_MODE: undefined }))), /calculator: RELAY_MODE is not set, not debezium/);
    assertCaught(checkCdc(cdc((s) => (s.postgres.image = 'postgres:17'))), /postgres: postgres:17 is older than PostgreSQL 18/);
    assertCaught(checkCdc(cdc((s) => (s.postgres.command = ['postgres']))), /postgres does not run with wal_level=logical/);
    assertCaught(checkCdc(cdc((s) => (s['kafka-connect'].image = 'quay.io/debezium/connect:3.5.0.Final'))), /kafka-connect: quay.io\/debezium\/connect:3.5.0.Final is not Debezium 3.6.1.Final/);
    assertCaught(checkCdc(cdc((s) => setEnv(s['kafka-connect'], { BOOTSTRAP_SERVERS: 'broker:9092' }))), /kafka-connect: BOOTSTRAP_SERVERS names broker:9092, not a compose broker/);
    assertCaught(checkCdc(cdc((s) => delete s.connector.depends_on.calculator)), /connector does not wait for calculator to be healthy/);
    assertCaught(checkCdc(cdc((s) => delete s.connector)), /one service that registers the connector expected, found 0/);
    assertCaught(checkCdc(cdc((s) => (s.connector.volumes = []))), /connector sends \/summa\/summa-outbox.json, which no bind mount/);
    assertCaught(checkCdc(cdc(() => {}, { [connectorJson]: editJson((c) => (c['snapshot.mode'] = 'initial')) })), /summa-outbox.json is not outboxConnectorConfig\(\)/);
    assertCaught(checkCdc(cdc(() => {}, { [connectorJson]: editJson((c) => delete c['transforms.dropRouterId.headers']) })), /is not outboxConnectorConfig\(\)/);
    // The slot the calculator watches must be the one the connector streams from.
    assertCaught(checkCdc(cdc((s) => setEnv(s.calculator, { CAPTURE_SLOT_NAME: 'other_slot' }))), /is not outboxConnectorConfig\(\) for the calculators' database and slot/);
    assertCaught(checkCdc(cdc(() => {}, { 'tools/local-stack/kafka-connect/pom.xml': (text) => text.replace('<debezium.version>3.6.1.Final<', '<debezium.version>3.7.0.Final<') })), /is not Debezium 3.7.0.Final/);
  });
});
