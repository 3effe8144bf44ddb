import { context, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { node as sdkTraceNode } from '@opentelemetry/sdk-node';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Tracing } from './handle.ts';
import { w3cPropagator } from './tracing.ts';

// The OpenTelemetry SDK, loaded only when tracing is on: it costs each process about 13 MB.

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
