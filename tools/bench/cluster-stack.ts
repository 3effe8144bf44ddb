// `npm start -- --cluster` as the benchmark runs it: the launcher as a process of its own, on a
// temporary data folder and a port offset under which every port of the topology is free. Whatever
// Kafka and PostgreSQL the launcher runs, the benchmark learns them from its run state.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { readRunState, type ComponentRole, type KafkaClientSettings, type RunState } from '../../src/cli/run-state.ts';
import { repoRoot } from '../lib/paths.ts';
import { hasExited, spawnTiedToParent } from '../lib/tied-process.ts';
import { freeClusterPortOffset, type Topology } from '../local-stack/topology.ts';
import { cpuSeconds, treeCpuSeconds } from './process-stats.ts';

/** The parts whose CPU the benchmark reports apart. */
export const PROCESS_GROUPS = ['calculators', 'relays', 'totals', 'kafka', 'postgres', 'nginx', 'launcher'] as const;
export type ProcessGroup = (typeof PROCESS_GROUPS)[number];

const GROUP_OF_ROLE: Partial<Record<ComponentRole, ProcessGroup>> = {
  calculator: 'calculators',
  relay: 'relays',
  totals: 'totals',
  'kafka-broker': 'kafka',
  'postgres-primary': 'postgres',
  'postgres-replica': 'postgres',
  nginx: 'nginx',
};

export interface ClusterStack {
  readonly dataDir: string;
  readonly topology: Topology;
  /** The run state as the launcher wrote it once everything was up. */
  readonly state: RunState;
  /** nginx's gRPC listener, in front of the calculators. */
  readonly grpcTarget: string;
  /** CPU seconds used so far by each group, over the pids the run state names now. */
  groupCpuSeconds(): Promise<Record<ProcessGroup, number>>;
  /** Ctrl-C to the launcher (which stops everything in order); SIGKILL to what is left after a minute. */
  stop(): Promise<void>;
}

const READY_LINE = 'Summa is running (cluster).';

export async function startClusterStack(options: { dataDir: string; startTimeoutMs?: number }): Promise<ClusterStack> {
  // The launcher runs the services compiled (dist/), as `npm start` does after building them.
  const build = spawnSync(process.execPath, [path.join(repoRoot, 'tools/build/build.mjs'), '--if-stale'], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  if (build.status !== 0) throw new Error(`npm run build failed (${build.status ?? build.signal}); see its output above`);
  const { offset, topology } = await freeClusterPortOffset();
  const logFile = path.join(options.dataDir, 'launcher.log');
  const child = spawnTiedToParent(
    process.execPath,
    ['--import', 'tsx', path.join(repoRoot, 'tools/local-stack/launcher.ts'), '--cluster', '--port-offset', String(offset)],
    logFile,
    // The services log warnings only, as in the single-node measurement.
    { cwd: repoRoot, env: { ...process.env, SUMMA_DATA_DIR: options.dataDir, LOG_LEVEL: 'warn' }, ipc: true },
  );
  let lastState: RunState | null = null;
  const stop = async () => {
    if (!hasExited(child)) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 60_000).unref())]);
    }
    // Whatever outlived the launcher (it was killed, or hung while stopping).
    for (const component of lastState?.components ?? []) {
      if (component.pid !== null && component.pid > 0) {
        try {
          process.kill(component.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (!hasExited(child)) child.kill('SIGKILL');
  };
  try {
    await waitForBanner(child, logFile, options.startTimeoutMs ?? 300_000);
    lastState = await readRunState(options.dataDir);
    if (!lastState) throw new Error(`the launcher said it runs but wrote no run state in ${options.dataDir}`);
  } catch (error) {
    await stop();
    throw error;
  }
  const state = lastState;
  return {
    dataDir: options.dataDir,
    topology,
    state,
    grpcTarget: `127.0.0.1:${state.components.find((component) => component.role === 'nginx')?.ports[0] ?? topology.entryPoints.grpc}`,
    async groupCpuSeconds() {
      lastState = (await readRunState(options.dataDir)) ?? lastState;
      const cpu = Object.fromEntries(PROCESS_GROUPS.map((group) => [group, 0])) as Record<ProcessGroup, number>;
      for (const component of lastState!.components) {
        const group = GROUP_OF_ROLE[component.role];
        // PostgreSQL's backends, nginx's workers and the JVM's children are counted with them.
        if (group && component.pid !== null) cpu[group] += treeCpuSeconds(component.pid);
      }
      cpu.launcher = cpuSeconds(lastState!.launcherPid);
      return cpu;
    },
    stop,
  };
}

/** The variables a Summa service needs to reach the cluster's Kafka as its administrator. */
export function kafkaClientEnv(state: RunState): Record<string, string> {
  const admin: KafkaClientSettings = state.kafkaAdmin ?? {};
  const env: Record<string, string> = { KAFKA_BROKERS: state.kafkaBrokers, KAFKA_TOPIC: state.topic };
  if (admin.securityProtocol) env.KAFKA_SECURITY_PROTOCOL = admin.securityProtocol;
  if (admin.saslMechanism) env.KAFKA_SASL_MECHANISM = admin.saslMechanism;
  if (admin.username) env.KAFKA_SASL_USERNAME = admin.username;
  if (admin.passwordFile) env.KAFKA_SASL_PASSWORD_FILE = admin.passwordFile;
  if (admin.caFile) env.KAFKA_TLS_CA_FILE = admin.caFile;
  return env;
}

async function waitForBanner(child: ChildProcess, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const output = await readFile(logFile, 'utf8').catch(() => '');
    if (output.includes(READY_LINE)) return;
    if (hasExited(child)) throw new Error(`npm start -- --cluster exited (${child.exitCode ?? child.signalCode}) before it ran:\n${output.slice(-4_000)}`);
    if (Date.now() > deadline) throw new Error(`npm start -- --cluster was not running within ${timeoutMs / 1000} s:\n${output.slice(-4_000)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

