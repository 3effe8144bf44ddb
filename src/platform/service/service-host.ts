import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { migrate } from '../db/migrate.ts';
import { createPool, type Pool, type PoolOptions } from '../db/pool.ts';
import { createHttpServer } from '../http/server.ts';
import type { Logger } from '../logger.ts';
import { createMetricsRegistry } from '../metrics.ts';
import { retryUntilSuccess } from '../retry.ts';
import type { ServiceConfig } from './service-config.ts';
import { pause } from './shutdown.ts';

/** What every service runs on, as the host sets it up. */
export interface ServiceDefinition {
  /** Labels the service's metrics ("calculator") and names its database connections ("summa-calculator"). */
  readonly name: string;
  readonly config: ServiceConfig;
  readonly pool: Omit<PoolOptions, 'applicationName'>;
  /**
   * The schema migrated at start-up. Retried until PostgreSQL answers, so that a service may start
   * before its database.
   */
  readonly schema: { readonly name: string; readonly migrations: string };
}

/** Handed to a service to build its own parts on: the database is migrated, the HTTP server not listening yet. */
export interface ServiceHost {
  readonly pool: Pool;
  readonly registry: Registry;
  readonly http: FastifyInstance;
}

/** A service's own parts, built before the HTTP server listens. */
export interface ServiceParts<Started extends StartedParts> {
  /** Runs once the HTTP server listens; readiness turns true when it resolves. */
  start(): Promise<Started>;
}

/** What a service's parts tell once started: how they stop, and whatever else the running service shows. */
export interface StartedParts {
  readonly stopSteps: StopSteps;
  /** Why the running service is not ready now (/readyz answers 503 with it); undefined while it is. */
  readonly notReadyReason?: () => string | undefined;
  /** What needs an operator soon without making the service unready (/readyz lists them in `warnings`). */
  readonly warnings?: () => readonly string[];
}

export type StopStep = () => void | Promise<void>;

/**
 * Where a service's own steps go in the stop: readiness turns false; `beforeDelay` runs, in order;
 * the shutdown delay passes; the HTTP server closes while `withHttpClose` runs; `afterHttpClose`
 * runs, in order; the pool ends.
 */
export interface StopSteps {
  readonly beforeDelay?: readonly StopStep[];
  readonly withHttpClose?: readonly StopStep[];
  readonly afterHttpClose?: readonly StopStep[];
}

export interface RunningService {
  readonly httpPort: number;
  readonly shutdownTimeoutMs: number;
  stop(): Promise<void>;
}

/**
 * Runs a service on what every service has (a pool on its migrated schema, a metrics registry, an
 * HTTP server whose /readyz follows readiness) and stops it in order. `build` adds the service's own
 * parts; the HTTP server listens before they start, and readiness turns true once they have.
 */
export async function startService<Started extends StartedParts>(
  definition: ServiceDefinition,
  logger: Logger,
  build: (host: ServiceHost) => ServiceParts<Started> | Promise<ServiceParts<Started>>,
): Promise<RunningService & Omit<Started, 'stopSteps' | 'notReadyReason' | 'warnings'>> {
  const { name, config, schema } = definition;
  const pool = createPool(config.databaseUrl, { ...definition.pool, applicationName: `summa-${name}` });
  await retryUntilSuccess(`migrating the ${schema.name} schema`, () => migrate(pool, schema.name, schema.migrations), logger);
  const registry = createMetricsRegistry(name);
  let ready = false;
  let notReadyReason: StartedParts['notReadyReason'];
  let warnings: StartedParts['warnings'];
  const http = createHttpServer({
    logger,
    registry,
    isReady: () => ready,
    notReadyReason: () => notReadyReason?.(),
    warnings: () => warnings?.() ?? [],
    tls: config.tls,
  });
  const parts = await build({ pool, registry, http });
  await http.listen({ host: config.host, port: config.httpPort });
  const { stopSteps, notReadyReason: partsNotReadyReason, warnings: partsWarnings, ...started } = await parts.start();
  notReadyReason = partsNotReadyReason;
  warnings = partsWarnings;
  ready = true;

  const address = http.server.address();
  return {
    ...started,
    httpPort: typeof address === 'object' && address ? address.port : config.httpPort,
    shutdownTimeoutMs: config.shutdown.timeoutMs,
    async stop() {
      ready = false;
      const notReadyAt = Date.now();
      await runInOrder(stopSteps.beforeDelay);
      // The delay counts from readiness turning false: whatever ran before it used up part of it.
      await pause(config.shutdown.delayMs - (Date.now() - notReadyAt));
      await Promise.all([...(stopSteps.withHttpClose ?? []).map((step) => step()), http.close()]);
      await runInOrder(stopSteps.afterHttpClose);
      await pool.end();
    },
  };
}

async function runInOrder(steps: readonly StopStep[] = []): Promise<void> {
  for (const step of steps) await step();
}
