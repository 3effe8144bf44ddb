import * as grpc from '@grpc/grpc-js';
import { toSummaError, type SummaError } from '../platform/errors.ts';
import { withGrpcServerMetrics, type GrpcServerMetrics } from '../platform/grpc/server-metrics.ts';
import { withGrpcServerSpan } from '../platform/grpc/server-tracing.ts';
import type { GrpcService } from '../platform/grpc/server.ts';
import { grpcStatusOf } from '../platform/grpc/status.ts';
import { isMalformedRequest } from '../platform/grpc/tolerant-decoding.ts';
import type { Logger } from '../platform/logger.ts';
import { bearerTokenMatches } from '../platform/security.ts';
import { buildAddCommand, type AddCommand, type AddResult } from './add-command.ts';
import type { AddRequestMessage, AddResponseMessage, CalculatorProtos } from './proto.ts';

export const CALCULATOR_SERVICE_NAME = 'summa.v1.CalculatorService';
export const CALCULATOR_COMPAT_SERVICE_NAME = 'CalculatorService';

export interface CalculatorGrpcRoutesOptions {
  logger: Logger;
  metrics?: GrpcServerMetrics;
  /** Add needs `authorization: Bearer <token>` metadata when set. */
  writeToken?: string;
}

/**
 * The gRPC face of Add, served as summa.v1.CalculatorService and as the package-less
 * CalculatorService by the same handler.
 */
export function calculatorGrpcRoutes(
  protos: CalculatorProtos,
  add: (command: AddCommand) => Promise<AddResult>,
  options: CalculatorGrpcRoutesOptions,
): GrpcService[] {
  const handler = addHandler(add, options);
  const instrumented = (service: string) => {
    const traced = withGrpcServerSpan(service, 'Add', handler);
    return options.metrics ? withGrpcServerMetrics(options.metrics, service, 'Add', traced) : traced;
  };
  return [
    { name: CALCULATOR_SERVICE_NAME, definition: protos.service, implementation: { Add: instrumented(CALCULATOR_SERVICE_NAME) } },
    {
      name: CALCULATOR_COMPAT_SERVICE_NAME,
      definition: protos.compatService,
      implementation: { Add: instrumented(CALCULATOR_COMPAT_SERVICE_NAME) },
    },
  ];
}

function addHandler(
  add: (command: AddCommand) => Promise<AddResult>,
  options: CalculatorGrpcRoutesOptions,
): grpc.handleUnaryCall<AddRequestMessage, AddResponseMessage> {
  return (call, callback) => {
    const request = call.request;
    if (options.writeToken !== undefined && !bearerTokenMatches(call.metadata.get('authorization')[0], options.writeToken)) {
      callback({ code: grpc.status.UNAUTHENTICATED, details: 'Add needs "authorization: Bearer <token>" metadata with the write token' });
      return;
    }
    if (isMalformedRequest(request)) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: 'the request is not a valid AddRequest message' });
      return;
    }
    // proto3 cannot tell an empty string from an absent one: both mean "assign an id".
    const requestId = request.request_id === '' ? undefined : request.request_id;
    Promise.resolve()
      .then(() => add(buildAddCommand({ num1: request.num1, num2: request.num2, requestId })))
      .then(
        (result) => callback(null, { sum: result.sum.toString(), request_id: result.requestId, replayed: result.replayed }),
        (error: unknown) => {
          const failure = toSummaError(error);
          if (failure.code === 'INTERNAL') options.logger.error({ err: failure.cause ?? failure }, 'Add failed');
          callback({ code: grpcStatusOf(failure), details: failure.message, metadata: trailerOf(failure) });
        },
      );
  };
}

/**
 * The request id a failure is about, in the `summa-request-id-bin` trailer (its UTF-8 bytes: a
 * plain gRPC metadata value may hold only ASCII, and an id may be any Unicode).
 */
function trailerOf(failure: SummaError): grpc.Metadata | undefined {
  if (failure.requestId === undefined) return undefined;
  const trailer = new grpc.Metadata();
  trailer.set('summa-request-id-bin', Buffer.from(failure.requestId, 'utf8'));
  return trailer;
}
