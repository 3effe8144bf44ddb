// The Kubernetes manifests in deploy/kubernetes, checked without a cluster: every manifest is
// parsed and held against the kustomization, against each other, against the image's entrypoint
// and against the services' real configuration readers. Each check is also run on a broken copy,
// to show that it fails when it should.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import YAML from 'yaml';
import {
  containerArgv,
  describeProblems,
  imageHolds,
  readImage,
  root,
  serviceRun,
  serviceSettings,
  SERVICES,
  variablesRead,
  type ServiceName,
  type ServiceSettings,
  type Yaml,
} from './deploy-support.ts';
import { envKafkaConfig } from '../../src/platform/service/service-config.ts';
import { SERVICE_NODE_FLAGS } from '../../tools/lib/service-node-flags.ts';

const DIR = path.join(root, 'deploy/kubernetes');
const NAMESPACE = 'summa';
const IMAGE = 'summa';
const REPLICAS: Record<ServiceName, number> = { calculator: 3, relay: 2, totals: 2 };
/** The ports each Service must offer, as the README gives them (the services' defaults). */
const SERVICE_PORTS: Record<ServiceName, Record<string, number>> = {
  calculator: { grpc: 9090, http: 8090 },
  relay: { http: 8091 },
  totals: { http: 8080 },
};
/** The kinds the manifests may use, with their API versions. */
const KINDS: Record<string, string> = {
  Namespace: 'v1',
  ConfigMap: 'v1',
  Secret: 'v1',
  Service: 'v1',
  Deployment: 'apps/v1',
  PodDisruptionBudget: 'policy/v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
};

interface Manifest {
  readonly file: string;
  readonly doc: Yaml;
}

interface KubeStack {
  readonly kustomization: Yaml;
  /** The YAML files in deploy/kubernetes besides kustomization.yaml. */
  readonly files: string[];
  /** The documents of the files kustomization.yaml lists. */
  readonly manifests: Manifest[];
}

function loadStack(): KubeStack {
  const kustomization: Yaml = YAML.parse(readFileSync(path.join(DIR, 'kustomization.yaml'), 'utf8'));
  const files = readdirSync(DIR).filter((file) => /\.ya?ml$/.test(file) && file !== 'kustomization.yaml').sort();
  const manifests: Manifest[] = [];
  for (const file of (kustomization?.resources ?? []).map(String)) {
    if (!files.includes(file)) continue;
    for (const document of YAML.parseAllDocuments(readFileSync(path.join(DIR, file), 'utf8'))) {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]!.message}`);
      const doc: Yaml = document.toJS();
      if (doc !== null) manifests.push({ file, doc });
    }
  }
  return { kustomization, files, manifests };
}

/** A copy of the manifests to break; `find` gives the document of a kind and name. */
function changedStack(change: (find: (kind: string, name: string) => Yaml, stack: KubeStack) => void): KubeStack {
  const original = loadStack();
  const stack: KubeStack = {
    kustomization: structuredClone(original.kustomization),
    files: [...original.files],
    manifests: original.manifests.map(({ file, doc }) => ({ file, doc: structuredClone(doc) })),
  };
  change((kind, name) => {
    const found = stack.manifests.find(({ doc }) => doc?.kind === kind && doc?.metadata?.name === name);
    assert.ok(found, `no ${kind} ${name} to change`);
    return found.doc;
  }, stack);
  return stack;
}

// ---------------------------------------------------------------------------------------------
// Reading the manifests

function ofKind(stack: KubeStack, kind: string): Yaml[] {
  return stack.manifests.filter(({ doc }) => doc?.kind === kind).map(({ doc }) => doc);
}

function describeDoc(doc: Yaml): string {
  return `${doc?.kind ?? '(no kind)'} ${doc?.metadata?.name ?? '(no name)'}`;
}

function podLabels(deployment: Yaml): Record<string, string> {
  return deployment?.spec?.template?.metadata?.labels ?? {};
}

/** Whether a label selector (a Service's selector or a matchLabels) selects pods with these labels. */
function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector ?? {});
  return entries.length > 0 && entries.every(([key, value]) => labels[key] === value);
}

function mainContainer(deployment: Yaml): Yaml {
  return deployment?.spec?.template?.spec?.containers?.[0];
}

/** The Deployments that run a Summa service, with the service each runs (from its command line). */
function workloads(stack: KubeStack): { deployment: Yaml; service: ServiceName }[] {
  const image = readImage();
  return ofKind(stack, 'Deployment').flatMap((deployment) => {
    const container = mainContainer(deployment);
    const run = serviceRun(image, containerArgv(image, container?.command, container?.args));
    return 'service' in run ? [{ deployment, service: run.service }] : [];
  });
}

function workload(stack: KubeStack, service: ServiceName, problems: string[]): Yaml | undefined {
  const deployment = ofKind(stack, 'Deployment').find((candidate) => candidate?.metadata?.name === service);
  if (!deployment) problems.push(`no Deployment ${service}`);
  return deployment;
}

function keysOf(doc: Yaml): Record<string, string> {
  const keys: Record<string, string> = {};
  for (const [key, value] of Object.entries(doc?.data ?? {})) keys[key] = doc?.kind === 'Secret' ? Buffer.from(String(value), 'base64').toString('utf8') : String(value);
  for (const [key, value] of Object.entries(doc?.stringData ?? {})) keys[key] = String(value ?? '');
  return keys;
}

function configSource(stack: KubeStack, kind: 'ConfigMap' | 'Secret', name: string): Record<string, string> | undefined {
  const doc = ofKind(stack, kind).find((candidate) => candidate?.metadata?.name === name);
  return doc ? keysOf(doc) : undefined;
}

interface ResolvedEnv {
  /** The environment the container starts with, from values, ConfigMaps and Secrets. */
  readonly env: Record<string, string>;
  /** Variables whose value differs per pod (fieldRef, resourceFieldRef). */
  readonly perPod: string[];
  readonly names: string[];
}

function resolveEnv(stack: KubeStack, container: Yaml): ResolvedEnv {
  const env: Record<string, string> = {};
  const perPod: string[] = [];
  const names: string[] = [];
  for (const source of container?.envFrom ?? []) {
    const ref = source?.configMapRef ?? source?.secretRef;
    const keys = configSource(stack, source?.configMapRef ? 'ConfigMap' : 'Secret', String(ref?.name)) ?? {};
    for (const [key, value] of Object.entries(keys)) {
      env[`${source?.prefix ?? ''}${key}`] = value;
      names.push(`${source?.prefix ?? ''}${key}`);
    }
  }
  for (const variable of container?.env ?? []) {
    const name = String(variable?.name);
    names.push(name);
    const from = variable?.valueFrom;
    if (from?.configMapKeyRef || from?.secretKeyRef) {
      const ref = from.configMapKeyRef ?? from.secretKeyRef;
      const value = configSource(stack, from.configMapKeyRef ? 'ConfigMap' : 'Secret', String(ref?.name))?.[String(ref?.key)];
      if (value !== undefined) env[name] = value;
    } else if (from) {
      perPod.push(name);
    } else {
      env[name] = String(variable?.value ?? '');
    }
  }
  return { env, perPod, names };
}

/** The settings the service in `deployment` starts with, or a problem when it would refuse them. */
/**
 * Runs a check on each service's Deployment with the settings its environment gives it; a missing
 * Deployment or unreadable settings are problems of their own. Returns all problems found.
 */
function eachConfiguredWorkload(
  stack: KubeStack,
  check: (workload: { service: ServiceName; deployment: Yaml; settings: ServiceSettings; name: string }, problems: string[]) => void,
): string[] {
  const problems: string[] = [];
  for (const service of SERVICES) {
    const deployment = workload(stack, service, problems);
    const settings = deployment && settingsOf(stack, deployment, service, problems);
    if (deployment && settings) check({ service, deployment, settings, name: `Deployment ${service}` }, problems);
  }
  return problems;
}

function settingsOf(stack: KubeStack, deployment: Yaml, service: ServiceName, problems: string[]): ServiceSettings | undefined {
  try {
    return serviceSettings(service, resolveEnv(stack, mainContainer(deployment)).env);
  } catch (error) {
    problems.push(`Deployment ${deployment?.metadata?.name}: the ${service} service refuses its environment: ${(error as Error).message}`);
    return undefined;
  }
}

/** A probe's or a Service's port (a name or a number) as a container port number. */
function portNumber(container: Yaml, port: unknown): number | undefined {
  if (typeof port === 'number') return port;
  const named = (container?.ports ?? []).find((candidate: Yaml) => candidate?.name === port);
  return named ? Number(named.containerPort) : /^\d+$/.test(String(port)) ? Number(port) : undefined;
}

function quantity(value: unknown): number {
  const match = /^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(String(value ?? ''));
  if (!match) return Number.NaN;
  const scale: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(match[1]) * (match[2] ? scale[match[2]]! : 1);
}

/** The HorizontalPodAutoscalers that scale `deployment`. */
function autoscalersOf(stack: KubeStack, deployment: Yaml): Yaml[] {
  return ofKind(stack, 'HorizontalPodAutoscaler').filter((autoscaler) => {
    const target = autoscaler?.spec?.scaleTargetRef;
    return target?.apiVersion === 'apps/v1' && target?.kind === 'Deployment' && target?.name === deployment?.metadata?.name;
  });
}

/** The pods `deployment` runs: its autoscaler's minimum when one scales it, else spec.replicas (1 when unset). */
function replicasOf(stack: KubeStack, deployment: Yaml): number {
  const autoscaler = autoscalersOf(stack, deployment)[0];
  return Number(autoscaler ? (autoscaler.spec?.minReplicas ?? 1) : (deployment?.spec?.replicas ?? 1));
}

/** The most pods `deployment` may run: its autoscaler's maximum, else its replicas. */
function maxReplicasOf(stack: KubeStack, deployment: Yaml): number {
  const autoscaler = autoscalersOf(stack, deployment)[0];
  return Number(autoscaler ? autoscaler.spec?.maxReplicas : replicasOf(stack, deployment));
}

// ---------------------------------------------------------------------------------------------
// The checks: each returns its problems, none when the manifests are right.

/** kustomization.yaml lists exactly the manifest files there are, for the summa namespace. */
function checkKustomization(stack: KubeStack): string[] {
  const problems: string[] = [];
  const { kustomization } = stack;
  if (kustomization?.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || kustomization?.kind !== 'Kustomization') {
    problems.push('kustomization.yaml is not a kustomize.config.k8s.io/v1beta1 Kustomization');
  }
  if (kustomization?.namespace !== NAMESPACE) problems.push(`kustomization.yaml sets namespace ${kustomization?.namespace}, not ${NAMESPACE}`);
  const listed: string[] = (kustomization?.resources ?? []).map(String);
  for (const file of listed) if (!stack.files.includes(file)) problems.push(`kustomization.yaml lists ${file}, which does not exist`);
  for (const file of stack.files) if (!listed.includes(file)) problems.push(`${file} is not listed in kustomization.yaml`);
  for (const file of new Set(listed)) if (listed.filter((other) => other === file).length > 1) problems.push(`kustomization.yaml lists ${file} twice`);
  if (!(kustomization?.images ?? []).some((image: Yaml) => image?.name === IMAGE)) problems.push(`kustomization.yaml has no images entry for ${IMAGE}, the image to set`);
  return problems;
}

/** Every manifest has apiVersion, kind and a name, lives in the summa namespace, and is unique. */
function checkMetadata(stack: KubeStack): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const { file, doc } of stack.manifests) {
    const where = `${file}: ${describeDoc(doc)}`;
    if (!doc?.apiVersion || !doc?.kind || !doc?.metadata?.name) problems.push(`${where} lacks apiVersion, kind or metadata.name`);
    else if (KINDS[doc.kind] !== doc.apiVersion) problems.push(`${where} has apiVersion ${doc.apiVersion}, not ${KINDS[doc.kind] ?? '(a kind these manifests do not use)'}`);
    if (doc?.kind === 'Namespace') {
      if (doc?.metadata?.name !== NAMESPACE) problems.push(`${where} is not the ${NAMESPACE} namespace`);
    } else if (doc?.metadata?.namespace !== NAMESPACE) {
      problems.push(`${where} is in namespace ${doc?.metadata?.namespace ?? '(none)'}, not ${NAMESPACE}`);
    }
    const key = describeDoc(doc);
    if (seen.has(key)) problems.push(`${key} is defined twice`);
    seen.add(key);
  }
  if (!ofKind(stack, 'Namespace').some((doc) => doc?.metadata?.name === NAMESPACE)) problems.push(`no Namespace ${NAMESPACE}`);
  return problems;
}

/**
 * A Deployment per service, running it from the image with its replicas (an autoscaler's minimum
 * for an autoscaled one, which then sets no replicas of its own) and resources, and a
 * PodDisruptionBudget for every Deployment that lets some but not all of its pods go at once.
 */
function checkWorkloads(stack: KubeStack): string[] {
  const problems: string[] = [];
  const image = readImage();
  for (const service of SERVICES) {
    const deployment = workload(stack, service, problems);
    if (!deployment) continue;
    const name = `Deployment ${service}`;
    const autoscalers = autoscalersOf(stack, deployment);
    if (autoscalers.length > 0 && deployment.spec?.replicas !== undefined) {
      problems.push(`${name} sets replicas although HorizontalPodAutoscaler ${autoscalers[0]?.metadata?.name} scales it: every apply would reset the count`);
    }
    if (replicasOf(stack, deployment) !== REPLICAS[service]) problems.push(`${name} has ${replicasOf(stack, deployment)} replicas, not ${REPLICAS[service]}`);
    const containers = deployment.spec?.template?.spec?.containers ?? [];
    if (containers.length !== 1) problems.push(`${name} has ${containers.length} containers, not one`);
    const container = containers[0];
    const run = serviceRun(image, containerArgv(image, container?.command, container?.args));
    if ('problem' in run) problems.push(`${name} ${run.problem}`);
    else if (run.service !== service) problems.push(`${name} runs the ${run.service} service`);
    if (String(container?.image).split(':')[0] !== IMAGE) problems.push(`${name} runs the image ${container?.image}, not ${IMAGE}`);
    const resources = container?.resources ?? {};
    for (const resource of ['cpu', 'memory']) {
      const request = quantity(resources.requests?.[resource]);
      const limit = quantity(resources.limits?.[resource]);
      if (Number.isNaN(request) || Number.isNaN(limit)) problems.push(`${name} lacks a ${resource} request or limit`);
      else if (request > limit) problems.push(`${name} requests more ${resource} than its limit`);
    }
  }
  for (const deployment of ofKind(stack, 'Deployment')) {
    const name = deployment?.metadata?.name;
    const budgets = ofKind(stack, 'PodDisruptionBudget').filter((budget) => selects(budget?.spec?.selector?.matchLabels, podLabels(deployment)));
    if (budgets.length === 0) problems.push(`no PodDisruptionBudget selects the ${name} pods`);
    for (const budget of budgets) {
      const replicas = replicasOf(stack, deployment);
      const { minAvailable, maxUnavailable } = budget.spec ?? {};
      const allowed = maxUnavailable !== undefined ? Number(maxUnavailable) : minAvailable !== undefined ? replicas - Number(minAvailable) : Number.NaN;
      if (!(allowed >= 1 && allowed < replicas)) problems.push(`PodDisruptionBudget ${budget.metadata?.name} lets ${allowed} of ${replicas} ${name} pods go at once`);
    }
  }
  return problems;
}

/** Each Deployment's selector matches its pods and no other's, and a Service (and only its own) selects them. */
function checkSelectors(stack: KubeStack): string[] {
  const problems: string[] = [];
  const deployments = ofKind(stack, 'Deployment');
  const services = ofKind(stack, 'Service');
  for (const deployment of deployments) {
    const name = `Deployment ${deployment?.metadata?.name}`;
    const labels = podLabels(deployment);
    const selector = deployment?.spec?.selector;
    if (selector?.matchExpressions) problems.push(`${name}: matchExpressions are beyond this check; use matchLabels`);
    if (!selects(selector?.matchLabels, labels)) problems.push(`${name}: its selector ${JSON.stringify(selector?.matchLabels)} does not match its pod labels ${JSON.stringify(labels)}`);
    for (const other of deployments) {
      if (other !== deployment && selects(selector?.matchLabels, podLabels(other))) problems.push(`${name}: its selector also matches the pods of Deployment ${other?.metadata?.name}`);
    }
    const own = services.filter((service) => selects(service?.spec?.selector, labels));
    if (own.length === 0) problems.push(`${name}: no Service selects its pods`);
    for (const service of own) {
      for (const port of service?.spec?.ports ?? []) {
        const target = portNumber(mainContainer(deployment), port?.targetPort ?? port?.port);
        if (!(mainContainer(deployment)?.ports ?? []).some((containerPort: Yaml) => Number(containerPort?.containerPort) === target)) {
          problems.push(`Service ${service?.metadata?.name}: port ${port?.name} targets ${port?.targetPort ?? port?.port}, which ${name}'s container does not expose`);
        }
      }
    }
  }
  for (const service of services) {
    const selected = deployments.filter((deployment) => selects(service?.spec?.selector, podLabels(deployment)));
    if (selected.length > 1) problems.push(`Service ${service?.metadata?.name} selects the pods of ${selected.map((d) => d?.metadata?.name).join(' and ')}`);
  }
  for (const budget of ofKind(stack, 'PodDisruptionBudget')) {
    const selected = deployments.filter((deployment) => selects(budget?.spec?.selector?.matchLabels, podLabels(deployment)));
    if (selected.length !== 1) problems.push(`PodDisruptionBudget ${budget?.metadata?.name} selects ${selected.length} Deployments' pods, not one`);
  }
  return problems;
}

/** Container ports, probes, Services and scrape annotations agree with the ports the service listens on under its environment. */
function checkPorts(stack: KubeStack): string[] {
  return eachConfiguredWorkload(stack, ({ service, deployment, settings, name }, problems) => {
    const container = mainContainer(deployment);
    const resolved = resolveEnv(stack, container);
    if (resolved.env.HOST !== '0.0.0.0') problems.push(`${name}: HOST is ${resolved.env.HOST ?? 'not set'}, not 0.0.0.0`);
    const containerPorts: Yaml[] = container?.ports ?? [];
    for (const [portName, port] of Object.entries(settings.ports)) {
      if (!containerPorts.some((candidate) => candidate?.name === portName && Number(candidate?.containerPort) === port)) {
        problems.push(`${name}: the service listens for ${portName} on ${port}, but no container port ${portName} is ${port}`);
      }
      if (SERVICE_PORTS[service][portName] !== port) problems.push(`${name}: ${portName} is on ${port}, not ${SERVICE_PORTS[service][portName]}`);
    }
    for (const containerPort of containerPorts) {
      if (settings.ports[containerPort?.name] !== Number(containerPort?.containerPort)) {
        problems.push(`${name}: container port ${containerPort?.name} ${containerPort?.containerPort} is not one the service listens on`);
      }
    }
    const probes: [string, string[]][] = [['readinessProbe', ['/readyz']], ['livenessProbe', ['/healthz']], ['startupProbe', ['/healthz', '/readyz']]];
    for (const [probeName, paths] of probes) {
      const probe = container?.[probeName];
      if (!probe) {
        if (probeName !== 'startupProbe') problems.push(`${name} has no ${probeName}`);
        continue;
      }
      const get = probe.httpGet;
      if (!paths.includes(get?.path)) problems.push(`${name}: ${probeName} asks ${get?.path ?? '(not an httpGet)'}, not ${paths.join(' or ')}`);
      if (portNumber(container, get?.port) !== settings.ports.http) problems.push(`${name}: ${probeName} asks port ${get?.port}, not the HTTP port ${settings.ports.http}`);
      if ((get?.scheme ?? 'HTTP') !== 'HTTP') problems.push(`${name}: ${probeName} uses ${get?.scheme}, but the service serves plain HTTP`);
    }
    const annotations = deployment.spec?.template?.metadata?.annotations ?? {};
    if (annotations['prometheus.io/scrape'] !== 'true') problems.push(`${name}: its pods lack prometheus.io/scrape: "true"`);
    if (annotations['prometheus.io/port'] !== String(settings.ports.http)) problems.push(`${name}: prometheus.io/port is ${annotations['prometheus.io/port']}, not the HTTP port ${settings.ports.http}`);
    if ((annotations['prometheus.io/path'] ?? '/metrics') !== '/metrics') problems.push(`${name}: prometheus.io/path is not /metrics`);
    const own = ofKind(stack, 'Service').filter((candidate) => selects(candidate?.spec?.selector, podLabels(deployment)));
    for (const [portName, port] of Object.entries(SERVICE_PORTS[service])) {
      const offered = own.flatMap((candidate) => candidate?.spec?.ports ?? []).find((candidate: Yaml) => candidate?.name === portName);
      if (!offered || Number(offered.port) !== port || portNumber(container, offered.targetPort ?? offered.port) !== settings.ports[portName]) {
        problems.push(`${name}: no Service offers ${portName} on ${port} to the container's ${portName} port`);
      }
    }
    if (service === 'totals') {
      if (resolved.perPod.includes('TOTALS_GROUP_ID')) problems.push(`${name}: TOTALS_GROUP_ID differs per pod, so the replicas would not share one consumer group`);
      if (!settings.groupId) problems.push(`${name}: no consumer group`);
    }
  });
}

/** Every variable a container is given is one its service reads, so that a misspelt name fails. */
function checkVariableNames(stack: KubeStack): string[] {
  const problems: string[] = [];
  const found = workloads(stack);
  if (found.length === 0) problems.push('no Deployment runs a Summa service');
  for (const { deployment, service } of found) {
    const { names } = resolveEnv(stack, mainContainer(deployment));
    const read = variablesRead(service);
    for (const name of names) if (!read.has(name)) problems.push(`Deployment ${deployment?.metadata?.name}: ${name} is not a variable the ${service} service reads`);
    for (const name of new Set(names)) if (names.filter((other) => other === name).length > 1) problems.push(`Deployment ${deployment?.metadata?.name}: ${name} is set twice`);
  }
  return problems;
}

/** Every ConfigMap and Secret reference names an existing key, and every key is used. */
function checkReferences(stack: KubeStack): string[] {
  const problems: string[] = [];
  const used = new Set<string>();
  for (const deployment of ofKind(stack, 'Deployment')) {
    const name = `Deployment ${deployment?.metadata?.name}`;
    for (const container of deployment?.spec?.template?.spec?.containers ?? []) {
      for (const variable of container?.env ?? []) {
        const from = variable?.valueFrom ?? {};
        for (const [refKind, kind] of [['configMapKeyRef', 'ConfigMap'], ['secretKeyRef', 'Secret']] as const) {
          const ref = from[refKind];
          if (!ref) continue;
          const keys = configSource(stack, kind, String(ref.name));
          if (!keys) problems.push(`${name}: ${variable.name} refers to ${kind} ${ref.name}, which does not exist`);
          else if (!(String(ref.key) in keys)) problems.push(`${name}: ${variable.name} refers to key ${ref.key} of ${kind} ${ref.name}, which it does not have`);
          used.add(`${kind}/${ref.name}/${ref.key}`);
        }
      }
      for (const source of container?.envFrom ?? []) {
        const kind = source?.configMapRef ? 'ConfigMap' : 'Secret';
        const ref = source?.configMapRef ?? source?.secretRef;
        const keys = configSource(stack, kind, String(ref?.name));
        if (!keys) problems.push(`${name}: envFrom refers to ${kind} ${ref?.name}, which does not exist`);
        for (const key of Object.keys(keys ?? {})) used.add(`${kind}/${ref?.name}/${key}`);
      }
    }
  }
  for (const kind of ['ConfigMap', 'Secret'] as const) {
    for (const doc of ofKind(stack, kind)) {
      for (const key of Object.keys(keysOf(doc))) {
        if (!used.has(`${kind}/${doc?.metadata?.name}/${key}`)) problems.push(`${kind} ${doc?.metadata?.name}: key ${key} is used by no Deployment`);
      }
    }
  }
  return problems;
}

/** SHUTDOWN_DELAY_MS is set, and Kubernetes waits longer than the whole graceful stop before it kills. */
function checkShutdown(stack: KubeStack): string[] {
  return eachConfiguredWorkload(stack, ({ service, deployment, settings, name }, problems) => {
    if (!resolveEnv(stack, mainContainer(deployment)).names.includes('SHUTDOWN_DELAY_MS') || settings.shutdownDelayMs <= 0) {
      problems.push(`${name}: SHUTDOWN_DELAY_MS is not set, so the listeners would close before the endpoints are removed`);
    }
    const grace = deployment.spec?.template?.spec?.terminationGracePeriodSeconds;
    if (typeof grace !== 'number') {
      problems.push(`${name}: terminationGracePeriodSeconds is not set`);
      return;
    }
    if (grace * 1000 <= settings.shutdownDelayMs) problems.push(`${name}: terminationGracePeriodSeconds ${grace} s is not more than SHUTDOWN_DELAY_MS ${settings.shutdownDelayMs} ms`);
    if (grace * 1000 <= settings.shutdownTimeoutMs) {
      problems.push(`${name}: terminationGracePeriodSeconds ${grace} s is not more than the graceful stop may take (SHUTDOWN_TIMEOUT_MS, ${settings.shutdownTimeoutMs} ms)`);
    }
  });
}

/**
 * The calculator is scaled by a HorizontalPodAutoscaler (autoscaling/v2) that names an existing
 * Deployment, keeps at least two pods (one may be disrupted), has min ≤ max, and scales on
 * resources the container requests (utilization is measured against the request).
 */
function checkAutoscaler(stack: KubeStack): string[] {
  const problems: string[] = [];
  const deployments = ofKind(stack, 'Deployment');
  const calculator = deployments.find((deployment) => deployment?.metadata?.name === 'calculator');
  if (!calculator || autoscalersOf(stack, calculator).length === 0) problems.push('no HorizontalPodAutoscaler scales Deployment calculator');
  for (const autoscaler of ofKind(stack, 'HorizontalPodAutoscaler')) {
    const name = `HorizontalPodAutoscaler ${autoscaler?.metadata?.name}`;
    const target = deployments.find((deployment) => autoscalersOf(stack, deployment).includes(autoscaler));
    if (!target) {
      const ref = autoscaler?.spec?.scaleTargetRef;
      problems.push(`${name} scales ${ref?.kind} ${ref?.name} (${ref?.apiVersion}), which is no Deployment here`);
      continue;
    }
    const min = Number(autoscaler.spec?.minReplicas ?? 1);
    const max = Number(autoscaler.spec?.maxReplicas);
    if (!(min >= 2)) problems.push(`${name} lets ${target.metadata?.name} go down to ${min} pod(s): one disruption would stop it`);
    if (!(min <= max)) problems.push(`${name} has minReplicas ${min} above maxReplicas ${autoscaler.spec?.maxReplicas}`);
    const metrics: Yaml[] = autoscaler.spec?.metrics ?? [];
    if (metrics.length === 0) problems.push(`${name} names no metric to scale on`);
    for (const metric of metrics) {
      if (metric?.type !== 'Resource' || metric?.resource?.target?.type !== 'Utilization') continue;
      const resource = metric.resource.name;
      for (const container of target.spec?.template?.spec?.containers ?? []) {
        if (container?.resources?.requests?.[resource] === undefined) {
          problems.push(`${name} scales ${target.metadata?.name} on ${resource} utilization, but its container ${container?.name} requests no ${resource}`);
        }
      }
    }
  }
  return problems;
}

/**
 * No more totals pods than the topic has partitions, autoscaled or not: the consumer group gives
 * each partition to one member, so the rest would sit idle.
 */
function checkConsumerScaling(stack: KubeStack): string[] {
  const problems: string[] = [];
  const totals = workload(stack, 'totals', problems);
  if (!totals) return problems;
  let partitions: number;
  try {
    partitions = envKafkaConfig(resolveEnv(stack, mainContainer(totals)).env).topicPartitions;
  } catch (error) {
    return [...problems, `Deployment totals: ${(error as Error).message}`];
  }
  const most = maxReplicasOf(stack, totals);
  if (!(most <= partitions)) problems.push(`Deployment totals may run ${most} pods, more than the topic's ${partitions} partitions: ${most - partitions} would sit idle`);
  return problems;
}

// ---------------------------------------------------------------------------------------------

function assertClean(problems: string[]): void {
  assert.deepEqual(problems, [], `expected no problems, got:${describeProblems(problems)}`);
}

function assertCaught(problems: string[], expected: RegExp): void {
  assert.ok(problems.some((problem) => expected.test(problem)), `expected a problem matching ${expected}, got:${describeProblems(problems)}`);
}

function envOf(doc: Yaml): Yaml[] {
  return mainContainer(doc).env;
}

function setEnv(doc: Yaml, name: string, value: Yaml | undefined): void {
  const env = envOf(doc).filter((variable: Yaml) => variable.name !== name);
  if (value !== undefined) env.push(typeof value === 'string' ? { name, value } : { name, ...value });
  mainContainer(doc).env = env;
}

describe('Kubernetes manifests', () => {
  it('the variables each service reads come from its real configuration reader', () => {
    const calculator = variablesRead('calculator');
    for (const name of ['DATABASE_URL', 'HOST', 'CALCULATOR_GRPC_PORT', 'CALCULATOR_HTTP_PORT', 'KAFKA_TOPIC', 'SHUTDOWN_DELAY_MS', 'SHUTDOWN_TIMEOUT_MS', 'SUMMA_WRITE_TOKEN', 'LOG_LEVEL', 'OTEL_SERVICE_NAME']) {
      assert.ok(calculator.has(name), `calculator reads ${name}`);
    }
    assert.ok(!calculator.has('KAFKA_BROKERS'), 'the calculator does not talk to Kafka');
    assert.ok(variablesRead('totals').has('TOTALS_GROUP_ID') && variablesRead('totals').has('KAFKA_BROKERS'));
    assert.ok(variablesRead('relay').has('RELAY_HTTP_PORT') && !variablesRead('relay').has('SUMMA_WRITE_TOKEN'));
  });

  it('kustomization.yaml lists every manifest file, and only existing ones', () => {
    assertClean(checkKustomization(loadStack()));
    assert.ok(loadStack().manifests.length >= 10);
  });

  it('the kustomization check fails on a missing or an unlisted file', () => {
    assertCaught(checkKustomization(changedStack((_find, stack) => stack.kustomization.resources.push('ingress.yaml'))), /lists ingress\.yaml, which does not exist/);
    assertCaught(
      checkKustomization(changedStack((_find, stack) => (stack.kustomization.resources = stack.kustomization.resources.filter((file: string) => file !== 'relay.yaml')))),
      /relay\.yaml is not listed/,
    );
    assertCaught(checkKustomization(changedStack((_find, stack) => (stack.kustomization.namespace = 'default'))), /sets namespace default/);
    assertCaught(checkKustomization(changedStack((_find, stack) => (stack.kustomization.images = []))), /no images entry for summa/);
  });

  it('every manifest has apiVersion, kind, a name and the summa namespace', () => {
    assertClean(checkMetadata(loadStack()));
  });

  it('the metadata check fails on a wrong namespace, apiVersion or a missing field', () => {
    assertCaught(checkMetadata(changedStack((find) => (find('Deployment', 'relay').metadata.namespace = 'default'))), /Deployment relay is in namespace default/);
    assertCaught(checkMetadata(changedStack((find) => delete find('Service', 'totals').metadata.namespace)), /Service totals is in namespace \(none\)/);
    assertCaught(checkMetadata(changedStack((find) => (find('Deployment', 'totals').apiVersion = 'apps/v1beta1'))), /has apiVersion apps\/v1beta1, not apps\/v1/);
    assertCaught(checkMetadata(changedStack((find) => delete find('ConfigMap', 'summa-config').apiVersion)), /ConfigMap summa-config lacks apiVersion/);
    assertCaught(checkMetadata(changedStack((find) => (find('Namespace', 'summa').metadata.name = 'sums'))), /no Namespace summa/);
  });

  it('runs calculator ×3 (the autoscaler\'s minimum), relay ×2 and totals ×2 from the image, with resources, and a PodDisruptionBudget for each', () => {
    assertClean(checkWorkloads(loadStack()));
  });

  it('the workload check fails on wrong replicas, command, image, resources or budget', () => {
    assertCaught(checkWorkloads(changedStack((find) => (find('Deployment', 'relay').spec.replicas = 1))), /relay has 1 replicas, not 2/);
    assertCaught(checkWorkloads(changedStack((find) => (find('HorizontalPodAutoscaler', 'calculator').spec.minReplicas = 1))), /calculator has 1 replicas, not 3/);
    assertCaught(checkWorkloads(changedStack((find) => (mainContainer(find('Deployment', 'relay')).args = ['dist/totals/main.js']))), /relay runs the totals service/);
    assertCaught(
      checkWorkloads(
        changedStack((find) => {
          const container = mainContainer(find('Deployment', 'totals'));
          container.command = ['node', '--import', 'tsx', 'dist/totals/main.js'];
          delete container.args;
        }),
      ),
      /totals runs \["node","--import","tsx","dist\/totals\/main.js"\], not the image's entrypoint/,
    );
    assertCaught(checkWorkloads(changedStack((find) => (mainContainer(find('Deployment', 'totals')).args = ['src/totals/main.ts']))), /totals runs "src\/totals\/main.ts"/);
    assertCaught(checkWorkloads(changedStack((find) => (mainContainer(find('Deployment', 'relay')).image = 'node:20'))), /relay runs the image node:20/);
    assertCaught(checkWorkloads(changedStack((find) => delete mainContainer(find('Deployment', 'calculator')).resources.limits)), /calculator lacks a cpu request or limit/);
    assertCaught(checkWorkloads(changedStack((find) => (mainContainer(find('Deployment', 'relay')).resources.requests.memory = '2Gi'))), /relay requests more memory than its limit/);
    assertCaught(checkWorkloads(changedStack((find) => (find('PodDisruptionBudget', 'calculator').spec.selector.matchLabels = { app: 'calculator' }))), /no PodDisruptionBudget selects the calculator/);
    assertCaught(checkWorkloads(changedStack((find) => (find('PodDisruptionBudget', 'calculator').spec = { ...find('PodDisruptionBudget', 'calculator').spec, maxUnavailable: 3 }))), /lets 3 of 3 calculator pods go/);
  });

  it('a service the image does not hold is caught', () => {
    const image = readImage();
    assert.deepEqual(serviceRun(image, [...image.entrypoint, 'dist/relay/main.js']), { service: 'relay' });
    const withoutSources = { ...image, copies: image.copies.filter((copy) => copy.from !== 'src') };
    assert.match(String(Object.values(serviceRun(withoutSources, [...image.entrypoint, 'dist/relay/main.js']))[0]), /does not copy into the image/);
    const notCompiled = { ...image, copies: image.copies.map((copy) => ({ ...copy, compiled: false })) };
    assert.match(String(Object.values(serviceRun(notCompiled, [...image.entrypoint, 'dist/relay/main.js']))[0]), /does not copy into the image/);
  });

  it('the image runs the compiled services with plain node, and holds the proto files and migrations they read', () => {
    const image = readImage();
    // No TypeScript loader at run time: node with the flags `npm start` gives the services, nothing else.
    assert.deepEqual(image.entrypoint, ['node', ...SERVICE_NODE_FLAGS], 'the image runs node with SERVICE_NODE_FLAGS (tools/lib/service-node-flags.ts) and no loader');
    const inImage = (file: string) => path.posix.join(image.workdir, file);
    for (const file of ['proto/summa/v1/calculator.proto', 'proto/calculator_compat.proto', 'proto/grpc/health/v1/health.proto']) {
      assert.ok(imageHolds(image, inImage(file)), `the image lacks ${file}`);
    }
    for (const schema of ['calculator', 'totals']) {
      for (const migration of readdirSync(path.join(root, 'src', schema, 'migrations'))) {
        assert.ok(imageHolds(image, inImage(`dist/${schema}/migrations/${migration}`)), `the image lacks dist/${schema}/migrations/${migration}`);
      }
    }
    assert.ok(!imageHolds(image, inImage('src/relay/main.ts')), 'the image holds the TypeScript sources');
  });

  it("each Deployment's selector matches its pods, and its own Service selects them", () => {
    assertClean(checkSelectors(loadStack()));
  });

  it('the selector check fails when selectors and labels part', () => {
    assertCaught(
      checkSelectors(changedStack((find) => (find('Deployment', 'relay').spec.selector.matchLabels = { 'app.kubernetes.io/name': 'relays' }))),
      /Deployment relay: its selector .* does not match its pod labels/,
    );
    assertCaught(checkSelectors(changedStack((find) => (find('Service', 'totals').spec.selector = { 'app.kubernetes.io/name': 'total' }))), /Deployment totals: no Service selects its pods/);
    assertCaught(checkSelectors(changedStack((find) => (find('Service', 'relay').spec.selector = { 'app.kubernetes.io/part-of': 'summa' }))), /Service relay selects the pods of calculator and relay and totals/);
    assertCaught(checkSelectors(changedStack((find) => (find('Service', 'calculator').spec.ports[0].targetPort = 'grcp'))), /Service calculator: port grpc targets grcp/);
    assertCaught(checkSelectors(changedStack((find) => (find('PodDisruptionBudget', 'calculator').spec.selector.matchLabels = { 'app.kubernetes.io/part-of': 'summa' }))), /selects 3 Deployments' pods/);
  });

  it('container ports, probes, Services and scrape annotations match the ports the services listen on', () => {
    assertClean(checkPorts(loadStack()));
  });

  it('the port check fails on a port, probe, Service or annotation that misses the listener', () => {
    const port = (doc: Yaml, name: string) => mainContainer(doc).ports.find((candidate: Yaml) => candidate.name === name);
    assertCaught(checkPorts(changedStack((find) => (port(find('Deployment', 'relay'), 'http').containerPort = 8092))), /relay: the service listens for http on 8091, but no container port http is 8091/);
    assertCaught(checkPorts(changedStack((find) => setEnv(find('Deployment', 'calculator'), 'CALCULATOR_GRPC_PORT', '9091'))), /calculator: the service listens for grpc on 9091/);
    assertCaught(checkPorts(changedStack((find) => setEnv(find('Deployment', 'totals'), 'TOTALS_HTTP_PORT', 'eighty'))), /totals service refuses its environment: TOTALS_HTTP_PORT/);
    assertCaught(checkPorts(changedStack((find) => (mainContainer(find('Deployment', 'totals')).readinessProbe.httpGet.path = '/ready'))), /totals: readinessProbe asks \/ready, not \/readyz/);
    assertCaught(checkPorts(changedStack((find) => (mainContainer(find('Deployment', 'calculator')).livenessProbe.httpGet.port = 'grpc'))), /calculator: livenessProbe asks port grpc, not the HTTP port 8090/);
    assertCaught(checkPorts(changedStack((find) => (mainContainer(find('Deployment', 'calculator')).readinessProbe.httpGet.port = 9090))), /calculator: readinessProbe asks port 9090/);
    assertCaught(checkPorts(changedStack((find) => delete mainContainer(find('Deployment', 'relay')).livenessProbe)), /relay has no livenessProbe/);
    assertCaught(checkPorts(changedStack((find) => (find('Service', 'calculator').spec.ports[1].port = 80))), /calculator: no Service offers http on 8090/);
    assertCaught(checkPorts(changedStack((find) => (find('Deployment', 'calculator').spec.template.metadata.annotations['prometheus.io/port'] = '9090'))), /prometheus.io\/port is 9090/);
    assertCaught(checkPorts(changedStack((find) => setEnv(find('Deployment', 'relay'), 'HOST', undefined))), /relay: HOST is not set/);
    assertCaught(
      checkPorts(changedStack((find) => setEnv(find('Deployment', 'totals'), 'TOTALS_GROUP_ID', { valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }))),
      /TOTALS_GROUP_ID differs per pod/,
    );
  });

  it('every variable the manifests set is one the service reads', () => {
    assertClean(checkVariableNames(loadStack()));
  });

  it('the variable check fails on a misspelt or a foreign variable', () => {
    assertCaught(
      checkVariableNames(
        changedStack((find) => {
          const deployment = find('Deployment', 'relay');
          envOf(deployment).find((variable: Yaml) => variable.name === 'SHUTDOWN_DELAY_MS').name = 'SHUTDOWN_DELAY';
        }),
      ),
      /relay: SHUTDOWN_DELAY is not a variable the relay service reads/,
    );
    assertCaught(checkVariableNames(changedStack((find) => setEnv(find('Deployment', 'calculator'), 'KAFKA_BROKERS', 'kafka:9092'))), /calculator: KAFKA_BROKERS is not a variable the calculator/);
    assertCaught(checkVariableNames(changedStack((find) => setEnv(find('Deployment', 'totals'), 'TOTAL_GROUP_ID', 'x'))), /TOTAL_GROUP_ID is not a variable/);
    assertCaught(
      checkVariableNames(changedStack((find) => (mainContainer(find('Deployment', 'calculator')).envFrom = [{ configMapRef: { name: 'summa-config' } }]))),
      /calculator: KAFKA_BROKERS is not a variable/,
    );
  });

  it('every ConfigMap and Secret reference names an existing key, and every key is used', () => {
    assertClean(checkReferences(loadStack()));
  });

  it('the reference check fails on a missing ConfigMap, Secret or key, and on an unused key', () => {
    const ref = (doc: Yaml, name: string) => envOf(doc).find((variable: Yaml) => variable.name === name).valueFrom;
    assertCaught(checkReferences(changedStack((find) => (ref(find('Deployment', 'relay'), 'LOG_LEVEL').configMapKeyRef.key = 'LOG_LVL'))), /LOG_LEVEL refers to key LOG_LVL of ConfigMap summa-config/);
    assertCaught(checkReferences(changedStack((find) => (ref(find('Deployment', 'totals'), 'DATABASE_URL').secretKeyRef.name = 'summa-secret'))), /refers to Secret summa-secret, which does not exist/);
    assertCaught(checkReferences(changedStack((find) => delete find('Secret', 'summa-secrets').stringData.SUMMA_WRITE_TOKEN)), /SUMMA_WRITE_TOKEN refers to key SUMMA_WRITE_TOKEN of Secret summa-secrets/);
    assertCaught(checkReferences(changedStack((find) => (mainContainer(find('Deployment', 'relay')).envFrom = [{ configMapRef: { name: 'summa-settings' } }]))), /envFrom refers to ConfigMap summa-settings/);
    assertCaught(checkReferences(changedStack((find) => (find('ConfigMap', 'summa-config').data.KAFKA_BROKER = 'kafka:9092'))), /key KAFKA_BROKER is used by no Deployment/);
  });

  it('every Deployment has a PodDisruptionBudget that lets one pod go at a time', () => {
    const stack = loadStack();
    assertClean(checkWorkloads(stack));
    assert.deepEqual(ofKind(stack, 'PodDisruptionBudget').map((budget) => budget.metadata.name).sort(), ['calculator', 'relay', 'totals']);
  });

  it('the budget check fails on a Deployment without one, or one that lets every pod go', () => {
    const withoutBudget = (name: string) => changedStack((_find, stack) => {
      stack.manifests.splice(stack.manifests.findIndex(({ doc }) => doc?.kind === 'PodDisruptionBudget' && doc?.metadata?.name === name), 1);
    });
    assertCaught(checkWorkloads(withoutBudget('relay')), /no PodDisruptionBudget selects the relay pods/);
    assertCaught(checkWorkloads(withoutBudget('totals')), /no PodDisruptionBudget selects the totals pods/);
    assertCaught(checkWorkloads(changedStack((find) => (find('PodDisruptionBudget', 'totals').spec = { ...find('PodDisruptionBudget', 'totals').spec, maxUnavailable: undefined, minAvailable: 0 }))), /lets 2 of 2 totals pods go/);
  });

  it('a HorizontalPodAutoscaler scales the calculator on CPU from 3 pods, within its requests', () => {
    const stack = loadStack();
    assertClean(checkAutoscaler(stack));
    const calculator = ofKind(stack, 'Deployment').find((deployment) => deployment.metadata.name === 'calculator');
    assert.equal(calculator.spec.replicas, undefined, 'the autoscaler owns the calculator count');
    assert.ok(maxReplicasOf(stack, calculator) > replicasOf(stack, calculator));
  });

  it('the autoscaler check fails on a wrong target, min above max, one pod, no request, or replicas fixed as well', () => {
    assertCaught(checkAutoscaler(changedStack((find) => (find('HorizontalPodAutoscaler', 'calculator').spec.scaleTargetRef.name = 'calculators'))), /no HorizontalPodAutoscaler scales Deployment calculator/);
    assertCaught(checkAutoscaler(changedStack((find) => (find('HorizontalPodAutoscaler', 'calculator').spec.scaleTargetRef.name = 'calculators'))), /scales Deployment calculators \(apps\/v1\), which is no Deployment here/);
    assertCaught(checkAutoscaler(changedStack((find) => (find('HorizontalPodAutoscaler', 'calculator').spec.maxReplicas = 2))), /minReplicas 3 above maxReplicas 2/);
    assertCaught(checkAutoscaler(changedStack((find) => (find('HorizontalPodAutoscaler', 'calculator').spec.minReplicas = 1))), /lets calculator go down to 1 pod/);
    assertCaught(checkAutoscaler(changedStack((find) => delete mainContainer(find('Deployment', 'calculator')).resources.requests.cpu)), /scales calculator on cpu utilization, but its container calculator requests no cpu/);
    assertCaught(checkWorkloads(changedStack((find) => (find('Deployment', 'calculator').spec.replicas = 3))), /calculator sets replicas although HorizontalPodAutoscaler calculator scales it/);
    assertCaught(checkMetadata(changedStack((find) => (find('HorizontalPodAutoscaler', 'calculator').apiVersion = 'autoscaling/v1'))), /has apiVersion autoscaling\/v1, not autoscaling\/v2/);
  });

  it('runs no more totals pods than the topic has partitions', () => {
    assertClean(checkConsumerScaling(loadStack()));
  });

  it('the consumer scaling check fails on more totals pods, or an autoscaler reaching more, than partitions', () => {
    assertCaught(checkConsumerScaling(changedStack((find) => (find('Deployment', 'totals').spec.replicas = 8))), /totals may run 8 pods, more than the topic's 6 partitions: 2 would sit idle/);
    assertCaught(checkConsumerScaling(changedStack((find) => (find('ConfigMap', 'summa-config').data.KAFKA_TOPIC_PARTITIONS = '1'))), /totals may run 2 pods, more than the topic's 1 partitions/);
    assertCaught(
      checkConsumerScaling(
        changedStack((find, stack) => {
          const autoscaler = structuredClone(find('HorizontalPodAutoscaler', 'calculator'));
          autoscaler.metadata.name = 'totals';
          autoscaler.spec.scaleTargetRef.name = 'totals';
          stack.manifests.push({ file: 'totals.yaml', doc: autoscaler });
        }),
      ),
      /totals may run 12 pods, more than the topic's 6 partitions/,
    );
  });

  it('SHUTDOWN_DELAY_MS is set and terminationGracePeriodSeconds outlasts the graceful stop', () => {
    assertClean(checkShutdown(loadStack()));
  });

  it('the shutdown check fails on a short grace period or a missing delay', () => {
    assertCaught(checkShutdown(changedStack((find) => (find('Deployment', 'calculator').spec.template.spec.terminationGracePeriodSeconds = 5))), /terminationGracePeriodSeconds 5 s is not more than SHUTDOWN_DELAY_MS 5000 ms/);
    assertCaught(checkShutdown(changedStack((find) => (find('Deployment', 'relay').spec.template.spec.terminationGracePeriodSeconds = 25))), /not more than the graceful stop may take/);
    assertCaught(checkShutdown(changedStack((find) => delete find('Deployment', 'totals').spec.template.spec.terminationGracePeriodSeconds)), /totals: terminationGracePeriodSeconds is not set/);
    assertCaught(checkShutdown(changedStack((find) => setEnv(find('Deployment', 'calculator'), 'SHUTDOWN_DELAY_MS', undefined))), /calculator: SHUTDOWN_DELAY_MS is not set/);
    assertCaught(checkShutdown(changedStack((find) => (find('ConfigMap', 'summa-config').data.SHUTDOWN_DELAY_MS = '40000'))), /terminationGracePeriodSeconds 30 s is not more than SHUTDOWN_DELAY_MS 40000 ms/);
  });
});
