// What `summa status` decides from what it measured: each component's health and the one line
// that says why, the exit code, and the report as a person reads it. No I/O here, so each rule can
// be tested on its own.
import type { ComponentRole, RunComponent, RunState } from './run-state.ts';
import type { CaptureSlotGrade } from '../outbox/capture-slot.ts';
import type { ConnectorProbe } from './status-probes.ts';
import type { RetentionStatus } from './status-retention.ts';

/**
 * Exit codes of `summa status` (also in the usage text and README). `warning`: every component is
 * healthy but something needs an operator soon (a replication slot holding WAL); an unhealthy
 * component always wins over it.
 */
export const STATUS_EXIT = { healthy: 0, unhealthy: 1, usage: 2, notRunning: 3, warning: 4 } as const;

export interface ReplicaLag {
  /** The replica's application_name as the primary sees it. */
  name: string;
  state: string | null;
  /** WAL the replica has not replayed yet; null when the user may not see it. */
  lagBytes: number | null;
  /** pg_stat_replication.replay_lag in seconds; null while nothing was replayed lately. */
  replayLagSeconds: number | null;
}

export interface ComponentStatus {
  name: string;
  role: ComponentRole;
  pid: number | null;
  ports: number[];
  healthy: boolean;
  /** Why it is healthy or not, in a few words. */
  detail: string;
  /** Whether its pid is a live process (null: no pid to ask about). */
  alive: boolean | null;
  /** What its readiness said needs attention without making it unready (calculator, relay, totals). */
  warnings?: string[];
  // kafka-broker
  brokerId?: number;
  /** Partitions of the event topic it leads. */
  leads?: number[];
  /** Partitions it holds a replica of but is not in sync for. */
  outOfSync?: number[];
  // postgres-primary
  replicas?: ReplicaLag[];
  // postgres-replica
  inRecovery?: boolean;
  lagBytes?: number | null;
  lagSeconds?: number | null;
}

export interface PartitionLag {
  partition: number;
  /** The group's committed offset; null when it has committed none. */
  committed: number | null;
  /** The partition's high watermark (the offset the next record gets); null when its leader could not be asked. */
  end: number | null;
  /** Records not yet applied (from the committed offset, or the earliest one when none); null when unknown. */
  lag: number | null;
  /** Why end and lag are unknown, when they are. */
  error?: string;
}

export interface PartitionReplicas {
  partition: number;
  leader: number;
  replicas: number[];
  isr: number[];
}

export interface StatusReport {
  topology: RunState['topology'];
  dataDir: string;
  startedAt: string;
  launcher: { pid: number; alive: boolean };
  healthy: boolean;
  components: ComponentStatus[];
  consumerGroup: string;
  topic: string;
  /** Per partition of the event topic; empty when Kafka could not be asked (see kafkaError). */
  consumerLag: PartitionLag[];
  /** Who leads and who is in sync, per partition of the event topic. */
  partitions: PartitionReplicas[];
  /** Why the Kafka figures are missing, when they are. */
  kafkaError?: string;
  /** Under change data capture: the outbox's replication slot, graded (see capture-slot.ts). */
  captureSlot?: CaptureSlotGrade & { name: string };
  /** Each partitioned table (calculator.requests, totals.applied_events), as its service's /metrics tell. */
  retention: RetentionStatus[];
  /** What needs attention without making anything unhealthy. */
  warnings: string[];
}

/** What was measured about a service (calculator, relay, totals). */
export interface ReadinessProbe {
  /** HTTP status of its readiness URL; undefined when no answer came. */
  status?: number;
  /** The `reason` a 503 carried, or why no answer came (refused, timed out). */
  reason?: string;
  /** The `warnings` its body carried: things to see to that leave it ready. */
  warnings?: string[];
}

function base(component: RunComponent, alive: boolean | null): Omit<ComponentStatus, 'healthy' | 'detail'> {
  return { name: component.name, role: component.role, pid: component.pid, ports: component.ports, alive };
}

/** A process without a pid, or whose pid is gone, is down whatever else answers on its port. */
function processProblem(component: RunComponent, alive: boolean | null): string | undefined {
  if (component.pid === null) return 'no process (being restarted)';
  if (alive === false) return `process ${component.pid} is not running`;
  return undefined;
}

export function serviceStatus(component: RunComponent, alive: boolean | null, readiness: ReadinessProbe): ComponentStatus {
  const down = processProblem(component, alive);
  if (down) return { ...base(component, alive), healthy: false, detail: down };
  if (readiness.status === 200) {
    const warnings = readiness.warnings ?? [];
    if (warnings.length === 0) return { ...base(component, alive), healthy: true, detail: 'ready' };
    return { ...base(component, alive), healthy: true, detail: `ready, with ${warnings.length === 1 ? 'a warning' : `${warnings.length} warnings`}`, warnings };
  }
  const detail =
    readiness.status === undefined
      ? `readiness check failed: ${readiness.reason ?? 'no answer'}`
      : `not ready (HTTP ${readiness.status}${readiness.reason ? `: ${readiness.reason}` : ''})`;
  return { ...base(component, alive), healthy: false, detail };
}

/**
 * Kafka Connect running the change-data-capture relay: healthy while its connector and every task
 * are RUNNING. A connector that is down holds WAL on disk through its replication slot.
 */
export function connectStatus(component: RunComponent, alive: boolean | null, probe: ConnectorProbe): ComponentStatus {
  const down = processProblem(component, alive);
  if (down) return { ...base(component, alive), healthy: false, detail: down };
  if (!probe.ok) return { ...base(component, alive), healthy: false, detail: `REST API does not answer: ${probe.error}` };
  if (!probe.registered) return { ...base(component, alive), healthy: false, detail: `connector ${probe.name} is not registered` };
  const tasks = probe.tasks.map((task) => `task ${task.id} ${task.state}`);
  const healthy = probe.connector === 'RUNNING' && probe.tasks.length > 0 && probe.tasks.every((task) => task.state === 'RUNNING');
  const detail = [`connector ${probe.name} ${probe.connector}`, ...(tasks.length > 0 ? tasks : ['no task'])].join(', ');
  return { ...base(component, alive), healthy, detail: healthy ? detail : `${detail} (its replication slot holds WAL meanwhile)` };
}

/** What Kafka told about the cluster: its brokers, and the event topic's partitions. */
export interface KafkaMetadata {
  brokerIds: number[];
  partitions: PartitionReplicas[];
}

export function brokerStatus(
  component: RunComponent,
  alive: boolean | null,
  portOpen: boolean,
  metadata: KafkaMetadata | { error: string },
): ComponentStatus {
  const id = component.brokerId;
  const known = 'error' in metadata ? undefined : metadata;
  const leads = known && id !== undefined ? known.partitions.filter((p) => p.leader === id).map((p) => p.partition) : [];
  const outOfSync =
    known && id !== undefined ? known.partitions.filter((p) => p.replicas.includes(id) && !p.isr.includes(id)).map((p) => p.partition) : [];
  const status = { ...base(component, alive), ...(id === undefined ? {} : { brokerId: id }), leads, outOfSync };
  const down = processProblem(component, alive);
  if (down) return { ...status, healthy: false, detail: down };
  if (!portOpen) return { ...status, healthy: false, detail: `port ${component.ports[0]} does not accept connections` };
  if (!known) return { ...status, healthy: false, detail: `cluster metadata unavailable: ${(metadata as { error: string }).error}` };
  if (id !== undefined && !known.brokerIds.includes(id)) {
    return { ...status, healthy: false, detail: `broker ${id} is not in the cluster metadata` };
  }
  const parts = [leads.length > 0 ? `leads ${leads.join(',')}` : 'leads no partition'];
  if (outOfSync.length > 0) parts.push(`out of sync on ${outOfSync.join(',')}`);
  return { ...status, healthy: true, detail: parts.join('; ') };
}

export type PostgresProbe =
  | { ok: true; inRecovery: boolean; replicas: ReplicaLag[]; lagBytes: number | null; lagSeconds: number | null; streaming: boolean | null }
  | { ok: false; error: string };

export function postgresStatus(component: RunComponent, alive: boolean | null, probe: PostgresProbe): ComponentStatus {
  const down = processProblem(component, alive);
  if (down) return { ...base(component, alive), healthy: false, detail: down };
  if (!probe.ok) return { ...base(component, alive), healthy: false, detail: `cannot query: ${probe.error}` };
  if (component.role === 'postgres-replica') {
    const status = { ...base(component, alive), inRecovery: probe.inRecovery, lagBytes: probe.lagBytes, lagSeconds: probe.lagSeconds };
    // A replica that left recovery was promoted: it no longer follows the primary.
    if (!probe.inRecovery) return { ...status, healthy: false, detail: 'not in recovery: it was promoted and no longer follows the primary' };
    const parts = [`${formatBytes(probe.lagBytes)} behind`];
    if (probe.lagSeconds !== null) parts.push(`data at most ${formatSeconds(probe.lagSeconds)} old`);
    if (probe.streaming === false) parts.push('not streaming from the primary');
    return { ...status, healthy: true, detail: parts.join(', ') };
  }
  const detail =
    probe.replicas.length === 0
      ? 'accepting queries; no replica connected'
      : `accepting queries; ${probe.replicas.map((r) => `${r.name} ${formatBytes(r.lagBytes)} behind`).join(', ')}`;
  return { ...base(component, alive), healthy: true, replicas: probe.replicas, detail };
}

/** nginx, prometheus and anything else: the process and its ports. */
export function portsStatus(component: RunComponent, alive: boolean | null, closedPorts: number[]): ComponentStatus {
  const down = processProblem(component, alive);
  if (down) return { ...base(component, alive), healthy: false, detail: down };
  if (closedPorts.length > 0) return { ...base(component, alive), healthy: false, detail: `${closedPorts.length === 1 ? 'port' : 'ports'} ${closedPorts.join(',')} ${closedPorts.length === 1 ? 'does' : 'do'} not accept connections` };
  return { ...base(component, alive), healthy: true, detail: component.ports.length > 0 ? 'accepting connections' : 'running' };
}

/** What Kafka told about the event topic's offsets; a partition whose leader did not answer is in `failures`. */
export interface TopicOffsets {
  ends: Map<number, bigint>;
  earliest: Map<number, bigint>;
  committed: Map<number, bigint>;
  failures: Map<number, string>;
}

/** Committed offsets against high watermarks; the earliest offset stands in for a partition the group never committed. */
export function consumerLag(partitions: number[], offsets: TopicOffsets): PartitionLag[] {
  return [...partitions]
    .sort((a, b) => a - b)
    .map((partition) => {
      const offset = offsets.committed.get(partition);
      const committed = offset !== undefined && offset >= 0n ? offset : undefined;
      const end = offsets.ends.get(partition);
      if (end === undefined) {
        const error = offsets.failures.get(partition) ?? 'no offsets';
        return { partition, committed: committed === undefined ? null : Number(committed), end: null, lag: null, error };
      }
      const from = committed ?? offsets.earliest.get(partition) ?? 0n;
      return { partition, committed: committed === undefined ? null : Number(committed), end: Number(end), lag: Number(end > from ? end - from : 0n) };
    });
}

export function exitCodeFor(report: StatusReport): number {
  if (!report.healthy) return STATUS_EXIT.unhealthy;
  return report.warnings.length > 0 ? STATUS_EXIT.warning : STATUS_EXIT.healthy;
}

export function formatBytes(bytes: number | null): string {
  if (bytes === null) return '? bytes';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function formatSeconds(seconds: number): string {
  return seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s`;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  // The last column (the detail) is not padded, so lines do not end in spaces.
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  '));
}

/** The report as a person reads it: the components, then Kafka, replication and consumer lag. */
export function formatStatus(report: StatusReport): string {
  const lines: string[] = [];
  const launcher = `launcher pid ${report.launcher.pid}${report.launcher.alive ? '' : ' (NOT RUNNING: this state is left from a run that ended)'}`;
  lines.push(`summa ${report.topology} started ${report.startedAt} by ${launcher}; data ${report.dataDir}`);
  lines.push(report.healthy ? 'all components healthy' : `UNHEALTHY: ${report.components.filter((c) => !c.healthy).map((c) => c.name).join(', ')}`);
  for (const warning of report.warnings) lines.push(`WARNING: ${warning}`);
  lines.push('');
  lines.push(
    ...table([
      ['ROLE', 'NAME', 'PID', 'PORTS', 'HEALTH', 'DETAIL'],
      ...report.components.map((c) => [c.role, c.name, c.pid === null ? '-' : String(c.pid), c.ports.join(',') || '-', c.healthy ? 'ok' : 'DOWN', c.detail]),
    ]),
  );

  lines.push('', `Kafka brokers (topic ${report.topic}):`);
  if (report.kafkaError) lines.push(`  unavailable: ${report.kafkaError}`);
  for (const broker of report.components.filter((c) => c.role === 'kafka-broker')) {
    const leads = broker.leads && broker.leads.length > 0 ? `leads partitions ${broker.leads.join(',')}` : 'leads no partition';
    const sync = broker.outOfSync && broker.outOfSync.length > 0 ? `; out of sync on ${broker.outOfSync.join(',')}` : '';
    lines.push(`  ${broker.name}  id ${broker.brokerId ?? '?'}  ${broker.healthy ? 'up' : 'DOWN'}  ${leads}${sync}`);
  }
  const shortfalls = report.partitions.filter((p) => p.isr.length < p.replicas.length || p.leader < 0);
  for (const p of shortfalls) {
    lines.push(`  partition ${p.partition}: ${p.leader < 0 ? 'NO LEADER' : `leader ${p.leader}`}, in sync [${p.isr.join(',')}] of replicas [${p.replicas.join(',')}]`);
  }
  if (report.partitions.length > 0 && shortfalls.length === 0) lines.push(`  all ${report.partitions.length} partitions fully in sync`);

  const primaries = report.components.filter((c) => c.role === 'postgres-primary');
  const replicas = report.components.filter((c) => c.role === 'postgres-replica');
  if (primaries.length + replicas.length > 0) lines.push('', 'PostgreSQL replication:');
  for (const primary of primaries) {
    if (!primary.healthy) lines.push(`  ${primary.name}: ${primary.detail}`);
    else if (!primary.replicas?.length) lines.push(`  ${primary.name}: no replica connected`);
    for (const r of primary.replicas ?? []) {
      const lag = r.replayLagSeconds === null ? '' : `, replay lag ${formatSeconds(r.replayLagSeconds)}`;
      lines.push(`  ${primary.name} -> ${r.name} (${r.state ?? '?'}): ${formatBytes(r.lagBytes)} behind${lag}`);
    }
  }
  for (const replica of replicas) lines.push(`  ${replica.name}: ${replica.detail}`);

  if (report.captureSlot) lines.push('', 'Change data capture:', `  ${report.captureSlot.detail}`);

  if (report.retention.length > 0) lines.push('', 'Retention (partitions by period):');
  for (const r of report.retention) lines.push(`  ${r.table} (${r.service}): ${r.detail}`);

  const total = report.consumerLag.reduce((sum, p) => sum + (p.lag ?? 0), 0);
  const partial = report.consumerLag.some((p) => p.lag === null) ? ' (not counting the partitions whose offsets are unknown)' : '';
  const summary = report.consumerLag.length === 0 && report.kafkaError ? 'unknown' : `${total} record${total === 1 ? '' : 's'}${partial}`;
  lines.push('', `Consumer lag (group ${report.consumerGroup}): ${summary}`);
  for (const p of report.consumerLag) {
    const committed = `committed ${p.committed ?? 'none'}`;
    lines.push(`  partition ${p.partition}: ${p.lag === null ? `${committed}, end and lag unknown: ${p.error}` : `${committed}, end ${p.end}, lag ${p.lag}`}`);
  }
  return lines.join('\n');
}
