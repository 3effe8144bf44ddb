import * as grpc from '@grpc/grpc-js';
import { Counter, Histogram, type Registry } from 'prom-client';

/**
 * gRPC server metrics under the names of the widely used go-grpc-prometheus family, so existing
 * dashboards and alerts work unchanged: grpc_server_started_total, grpc_server_handled_total and
 * grpc_server_handling_seconds, labelled grpc_type, grpc_service, grpc_method (and grpc_code, as
 * Go spells it: OK, InvalidArgument, ...).
 */
export interface GrpcServerMetrics {
  started: Counter<'grpc_type' | 'grpc_service' | 'grpc_method'>;
  handled: Counter<'grpc_type' | 'grpc_service' | 'grpc_method' | 'grpc_code'>;
  handlingSeconds: Histogram<'grpc_type' | 'grpc_service' | 'grpc_method'>;
}

export function createGrpcServerMetrics(registry: Registry): GrpcServerMetrics {
  return {
    started: new Counter({
      name: 'grpc_server_started_total',
      help: 'Total number of RPCs started on the server.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method'],
      registers: [registry],
    }),
    handled: new Counter({
      name: 'grpc_server_handled_total',
      help: 'Total number of RPCs completed on the server, regardless of success or failure.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'],
      registers: [registry],
    }),
    handlingSeconds: new Histogram({
      name: 'grpc_server_handling_seconds',
      help: 'Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  };
}

/** Go's names of the status codes (codes.Code.String()), which the label values follow. */
const CODE_NAMES: Record<number, string> = {
  [grpc.status.OK]: 'OK',
  [grpc.status.CANCELLED]: 'Canceled',
  [grpc.status.UNKNOWN]: 'Unknown',
  [grpc.status.INVALID_ARGUMENT]: 'InvalidArgument',
  [grpc.status.DEADLINE_EXCEEDED]: 'DeadlineExceeded',
  [grpc.status.NOT_FOUND]: 'NotFound',
  [grpc.status.ALREADY_EXISTS]: 'AlreadyExists',
  [grpc.status.PERMISSION_DENIED]: 'PermissionDenied',
  [grpc.status.RESOURCE_EXHAUSTED]: 'ResourceExhausted',
  [grpc.status.FAILED_PRECONDITION]: 'FailedPrecondition',
  [grpc.status.ABORTED]: 'Aborted',
  [grpc.status.OUT_OF_RANGE]: 'OutOfRange',
  [grpc.status.UNIMPLEMENTED]: 'Unimplemented',
  [grpc.status.INTERNAL]: 'Internal',
  [grpc.status.UNAVAILABLE]: 'Unavailable',
  [grpc.status.DATA_LOSS]: 'DataLoss',
  [grpc.status.UNAUTHENTICATED]: 'Unauthenticated',
};

export function grpcCodeName(code: number | undefined): string {
  return CODE_NAMES[code ?? grpc.status.UNKNOWN] ?? 'Unknown';
}

/** `handler` counted and timed as `service`/`method` (a unary call). */
export function withGrpcServerMetrics<Request, Response>(
  metrics: GrpcServerMetrics,
  service: string,
  method: string,
  handler: grpc.handleUnaryCall<Request, Response>,
): grpc.handleUnaryCall<Request, Response> {
  const labels = { grpc_type: 'unary', grpc_service: service, grpc_method: method };
  // Bound once: label lookups stay off the per-call path.
  const started = metrics.started.labels(labels);
  const handlingSeconds = metrics.handlingSeconds.labels(labels);
  return (call, callback) => {
    started.inc();
    const startedAt = performance.now();
    handler(call, (error, value, trailer, flags) => {
      handlingSeconds.observe((performance.now() - startedAt) / 1000);
      metrics.handled.inc({ ...labels, grpc_code: grpcCodeName(error ? (error.code ?? grpc.status.UNKNOWN) : grpc.status.OK) });
      callback(error, value, trailer, flags);
    });
  };
}
