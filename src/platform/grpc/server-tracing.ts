import type * as grpc from '@grpc/grpc-js';
import { SpanStatusCode } from '@opentelemetry/api';
import { contextFromHeaders, SpanKind, tracer } from '../tracing/tracing.ts';

/**
 * `handler` inside a server span named `service/method`, continuing the caller's trace when the
 * call's metadata carries a traceparent. The handler runs with the span active, so whatever it
 * starts (the outbox write) becomes the span's child.
 */
export function withGrpcServerSpan<Request, Response>(
  service: string,
  method: string,
  handler: grpc.handleUnaryCall<Request, Response>,
): grpc.handleUnaryCall<Request, Response> {
  const name = `${service}/${method}`;
  const attributes = { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method };
  return (call, callback) => {
    const traceparent = call.metadata.get('traceparent')[0];
    const parent = contextFromHeaders(typeof traceparent === 'string' ? { traceparent } : {});
    tracer().startActiveSpan(name, { kind: SpanKind.SERVER, attributes }, parent, (span) => {
      handler(call, (error, value, trailer, flags) => {
        span.setAttribute('rpc.grpc.status_code', error ? (error.code ?? 2) : 0);
        if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error.details });
        span.end();
        callback(error, value, trailer, flags);
      });
    });
  };
}
