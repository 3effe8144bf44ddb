/**
 * What a benchmark started, to be stopped in reverse order when it ends, and also on SIGINT or
 * SIGTERM, so that an interrupted run leaves no servers behind.
 */
export function benchCleanups(log: (message: string) => void) {
  const cleanups: (() => Promise<unknown>)[] = [];
  async function cleanUp(): Promise<void> {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    cleanups.length = 0;
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      log(`${signal}: stopping`);
      void cleanUp().finally(() => process.exit(130));
    });
  }
  return { cleanups, cleanUp };
}
