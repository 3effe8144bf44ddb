import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per process, with Node's default process metrics (CPU, heap, event loop, GC). */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * A value read at scrape time from a dependency (the database, the broker), shared by the gauges
 * that show parts of it. While the dependency is down or slow the read yields undefined and those
 * gauges report no sample, rather than failing the whole scrape (which would hide every other
 * metric exactly when they matter).
 */
export function scrapeTimeReader<T>(read: () => Promise<T>, timeoutMs = 2_000): () => Promise<T | undefined> {
  let inFlight: Promise<T | undefined> | undefined;
  return () =>
    (inFlight ??= Promise.race([
      read().catch(() => undefined),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), timeoutMs).unref()),
    ]).finally(() => {
      inFlight = undefined;
    }));
}

/**
 * Leaves `gauge` without any sample in this scrape. Gauge.reset() would leave a label-less gauge
 * at 0, which reads as a real figure (an empty outbox) when the truth is "unknown".
 */
export function withoutSamples(gauge: Gauge): void {
  (gauge as unknown as { hashMap: Record<string, unknown> }).hashMap = {};
}

/**
 * A label-less gauge whose value is picked at scrape time from what `read` (a scrapeTimeReader)
 * yields; no sample while the read fails.
 */
export function scrapedGauge<T>(registry: Registry, name: string, help: string, read: () => Promise<T | undefined>, pick: (value: T) => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    async collect() {
      const value = await read();
      if (value === undefined) withoutSamples(this);
      else this.set(pick(value));
    },
  });
}
