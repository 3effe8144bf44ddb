// Keeps the launcher's processes running: starts each, and once the whole system has started,
// starts again any that exits, with its new pid reported to whoever keeps the run state.
import type { Logger } from '../../src/platform/logger.ts';

/** A started process, as its starter hands it over once it is ready. */
export interface RunningProcess {
  readonly pid: number;
  /** Settles when the process has exited, with how. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Asks it to stop and waits until it has (forcing it after a while). */
  stop(): Promise<void>;
}

export interface SupervisedProcess {
  name: string;
  /** Starts it; resolves once it is ready, rejects with the reason when it cannot start. */
  start(): Promise<RunningProcess>;
}

export interface SupervisorOptions {
  logger: Logger;
  /** Called whenever a pid changes (started, exited, restarted). */
  onChange(): void;
  /** Wait before the first restart; doubled after each failed one, up to maxRestartDelayMs. */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
}

export class Supervisor {
  private readonly running = new Map<string, RunningProcess>();
  private readonly specs = new Map<string, SupervisedProcess>();
  private restarting = false;
  private stopping = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Restarts under way, which a stop waits for (a while) so that it stops what they start. */
  private readonly restarts = new Set<Promise<void>>();

  constructor(private readonly options: SupervisorOptions) {}

  /** The pid of a supervised process, or null while it is down. */
  pid(name: string): number | null {
    return this.running.get(name)?.pid ?? null;
  }

  /**
   * Starts a process; rejects when it cannot start. Until restartOnExit() is called, an exit is
   * not answered with a restart: a failure during start-up would only fail again, and stops the
   * launcher with its reason instead.
   */
  async start(spec: SupervisedProcess): Promise<void> {
    this.specs.set(spec.name, spec);
    this.watch(spec, await spec.start());
  }

  /** From now on a process that exits is started again; one that already exited after it was ready, now. */
  restartOnExit(): void {
    this.restarting = true;
    for (const spec of this.specs.values()) {
      if (this.running.has(spec.name)) continue;
      this.options.logger.error({ service: spec.name }, 'service exited during start-up of the others; restarting it');
      this.restartLater(spec, 0);
    }
  }

  private watch(spec: SupervisedProcess, process: RunningProcess): void {
    if (this.stopping) {
      void process.stop();
      return;
    }
    this.running.set(spec.name, process);
    this.options.onChange();
    void process.exited.then(({ code, signal }) => {
      if (this.running.get(spec.name) !== process) return;
      this.running.delete(spec.name);
      this.options.onChange();
      if (this.stopping || !this.restarting) return;
      const delayMs = this.options.restartDelayMs ?? 1_000;
      this.options.logger.error({ service: spec.name, code, signal }, `service exited; restarting it in ${delayMs / 1000}s`);
      this.restartLater(spec, delayMs);
    });
  }

  private restartLater(spec: SupervisedProcess, delayMs: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.stopping) return;
      const restart = spec.start().then(
        async (process) => {
          if (this.stopping) return process.stop();
          this.options.logger.info({ service: spec.name, pid: process.pid }, 'service restarted');
          this.watch(spec, process);
        },
        (error: unknown) => {
          if (this.stopping) return;
          const next = Math.min(delayMs * 2, this.options.maxRestartDelayMs ?? 10_000);
          this.options.logger.error({ service: spec.name, err: error }, `restart failed; trying again in ${next / 1000}s`);
          this.restartLater(spec, next);
        },
      );
      this.restarts.add(restart);
      void restart.finally(() => this.restarts.delete(restart));
    }, delayMs);
    this.timers.add(timer);
  }

  /** Stops the named processes (all, by default) together, and restarts none of them any more. */
  async stop(names: string[] = [...this.specs.keys()]): Promise<void> {
    this.stopping = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await Promise.all(
      names.map(async (name) => {
        const process = this.running.get(name);
        if (!process) return;
        await process.stop();
        this.running.delete(name);
      }),
    );
    // A process still starting cannot be stopped before it is up; past this wait, the exit hook of
    // tools/lib/tied-process.ts kills it with the launcher.
    const waited = Promise.allSettled([...this.restarts]);
    await Promise.race([waited, new Promise((resolve) => setTimeout(resolve, 20_000).unref())]);
    this.options.onChange();
  }
}
