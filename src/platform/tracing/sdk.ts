import { ConfigError } from '../config.ts';
import type { Tracing } from './handle.ts';

// Kept apart from tracing.ts so that code which only creates spans does not load the SDK; the SDK
// itself (provider.ts) is loaded only when tracing is asked for.

const NO_TRACING: Tracing = { shutdown: async () => {} };

/**
 * Turns on OTLP export when the standard variables ask for it: OTEL_TRACES_EXPORTER=otlp, or an
 * OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set. The
 * exporter reads the endpoint, headers and timeout variables itself. Call it before the service starts.
 */
export async function initTracing(service: string, env: Record<string, string | undefined> = process.env): Promise<Tracing> {
  if (!tracingRequested(env)) return NO_TRACING;
  const [{ installTracing }, { OTLPTraceExporter }, { BatchSpanProcessor }] = await Promise.all([
    import('./provider.ts'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/sdk-trace-base'),
  ]);
  return installTracing(env.OTEL_SERVICE_NAME || `summa-${service}`, [new BatchSpanProcessor(new OTLPTraceExporter())]);
}

export function tracingRequested(env: Record<string, string | undefined>): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((name) => name.trim().toLowerCase()).filter(Boolean);
  const unsupported = exporters.filter((name) => name !== 'otlp' && name !== 'none');
  if (unsupported.length > 0) {
    throw new ConfigError(`OTEL_TRACES_EXPORTER: unsupported exporter "${unsupported[0]}" (use otlp or none)`);
  }
  if (exporters.includes('none')) return false;
  return exporters.includes('otlp') || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** Stops `service` and then flushes its spans, so the last ones are not lost at exit. */
export function flushTracingOnStop<T extends { stop(): Promise<void> }>(service: T, tracing: Tracing): T {
  const stop = service.stop.bind(service);
  service.stop = async () => {
    try {
      await stop();
    } finally {
      await tracing.shutdown();
    }
  };
  return service;
}

