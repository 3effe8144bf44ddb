import {
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

export { SpanKind, type Context, type Span };

/**
 * Tracing across the pipeline: gRPC/HTTP Add → outbox write → relay publish → totals apply, linked
 * by W3C `traceparent` values stored in the outbox row and carried in the Kafka record headers.
 * Until a tracer provider is installed (sdk.ts) every call here goes to the API's no-op
 * implementation.
 */
const TRACER_NAME = 'summa';
export const w3cPropagator = new W3CTraceContextPropagator();

export function tracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}

/** The `traceparent` (and `tracestate`) of `span`, to store or send along with what it produced. */
export function traceHeadersOf(span: Span): Record<string, string> {
  const headers: Record<string, string> = {};
  w3cPropagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, defaultTextMapSetter);
  return headers;
}

/** The context a stored or received `traceparent` stands for (the root context without one). */
export function contextFromHeaders(headers: Record<string, string | string[] | undefined>): Context {
  if (headers.traceparent === undefined) return ROOT_CONTEXT;
  return w3cPropagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
}

/** The span active in `parent` when it records (is sampled and exported), else undefined. */
export function recordingSpanIn(parent: Context): Span | undefined {
  const span = trace.getSpan(parent);
  return span?.isRecording() ? span : undefined;
}

/** trace_id and span_id of the active span, for log lines written inside it. */
export function activeTraceIds(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan();
  if (!span) return {};
  const spanContext = span.spanContext();
  return isSpanContextValid(spanContext) ? { trace_id: spanContext.traceId, span_id: spanContext.spanId } : {};
}

/** Marks `span` failed with `error`. */
export function recordFailure(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/**
 * Runs `work` inside a new server span, continuing the caller's trace when `headers` carry a
 * traceparent; the span ends when `work` settles and is marked failed when it throws.
 */
export function inServerSpan<T>(
  name: string,
  headers: Record<string, string | string[] | undefined>,
  attributes: Attributes,
  work: (span: Span) => Promise<T>,
): Promise<T> {
  return tracer().startActiveSpan(name, { kind: SpanKind.SERVER, attributes }, contextFromHeaders(headers), async (span) => {
    try {
      return await work(span);
    } catch (error) {
      recordFailure(span, error);
      throw error;
    } finally {
      span.end();
    }
  });
}
