// The health of the components and the consumer lag, for the console. Under `npm start` the
// launcher's run state names every component, and `summa status`'s own collection probes them; a
// totals service deployed without one knows only itself and the partitions its consumer holds.
import { collectStatus } from '../../cli/status-command.ts';
import { readRunState } from '../../cli/run-state.ts';
import type { PartitionLag } from '../../cli/status-report.ts';

export interface ComponentHealth {
  name: string;
  role: string;
  healthy: boolean;
  detail: string;
}

export interface PipelineStatus {
  probe(): Promise<{ components: ComponentHealth[]; consumerLag: PartitionLag[]; problem?: string }>;
}

export interface PipelineStatusOptions {
  /** The launcher's data folder; undefined: no run state to read. */
  runDataDir: string | undefined;
  /** This service's consumer's lag on the partitions it holds (the fallback without a run state). */
  ownLag: () => Promise<Map<number, bigint>>;
  /** Why this service is not ready, undefined while it is. */
  ownProblem: () => string | undefined;
}

export function pipelineStatus(options: PipelineStatusOptions): PipelineStatus {
  const own = async () => {
    const lag = await options.ownLag().catch(() => new Map<number, bigint>());
    const problem = options.ownProblem();
    return {
      components: [{ name: 'totals (this instance)', role: 'totals', healthy: problem === undefined, detail: problem ?? 'ready' }],
      consumerLag: [...lag]
        .sort(([a], [b]) => a - b)
        .map(([partition, records]) => ({ partition, committed: null, end: null, lag: Number(records) })),
    };
  };
  return {
    async probe() {
      if (options.runDataDir === undefined) return own();
      const state = await readRunState(options.runDataDir).catch(() => null);
      if (!state) return { ...(await own()), problem: `no run state in ${options.runDataDir}: only this instance is shown` };
      const report = await collectStatus(state, options.runDataDir, {});
      return {
        components: report.components.map(({ name, role, healthy, detail }) => ({ name, role, healthy, detail })),
        consumerLag: report.consumerLag,
        ...(report.kafkaError ? { problem: `Kafka: ${report.kafkaError}` } : {}),
      };
    },
  };
}
