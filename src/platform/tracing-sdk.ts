import { context, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { node as sdkTraceNode } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ConfigError } from './config.ts';
import { w3cPropagator } from './tracing.ts';

// Kept apart from tracing.ts so that code which only creates spans does not load the SDK.

export interface Tracing {
  /** Exports the spans still buffered and stops the provider. */
  shutdown(): Promise<void>;
}

const NO_TRACING: Tracing = { shutdown: async () => {} };

/**
 * Installs the global tracer provider (with the async-hooks context manager, so the active span
 * follows promises) exporting through the given processors. For tests and for initTracing.
 */
export function installTracing(service: string, spanProcessors: SpanProcessor[]): Tracing {
  const provider = new sdkTraceNode.NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': service }),
    spanProcessors,
  });
  provider.register({ propagator: w3cPropagator });
  return {
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      context.disable();
    },
  };
}

/**
 * Turns on OTLP export when the standard variables ask for it: OTEL_TRACES_EXPORTER=otlp, or an
 * OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set. The
 * exporter reads the endpoint, headers and timeout variables itself. Call it before the service starts.
 */
export function initTracing(service: string, env: Record<string, string | undefined> = process.env): Tracing {
  if (!tracingRequested(env)) return NO_TRACING;
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

