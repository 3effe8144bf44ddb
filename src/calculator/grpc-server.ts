import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { toSummaError } from '../platform/errors.ts';
import { grpcStatusOf } from '../platform/grpc/status.ts';
import { withGrpcServerMetrics, type GrpcServerMetrics } from '../platform/grpc/server-metrics.ts';
import { withGrpcServerSpan } from '../platform/grpc/server-tracing.ts';
import type { Logger } from '../platform/logger.ts';
import { bearerTokenMatches, type TlsIdentity } from '../platform/security.ts';
import { buildAddCommand, type AddCommand, type AddResult } from './add-command.ts';
import { loadCalculatorProtos, type AddRequestMessage, type AddResponseMessage } from './proto.ts';

export const CALCULATOR_SERVICE_NAME = 'summa.v1.CalculatorService';

export interface CalculatorGrpcServer {
  readonly port: number;
  readonly health: HealthImplementation;
  /** Health checks answer NOT_SERVING from now on; calls are still served. */
  markNotServing(): void;
  /** Stops taking new calls and waits for the ones in flight (cancels them after `timeoutMs`). */
  shutdown(timeoutMs?: number): Promise<void>;
}

export async function startCalculatorGrpcServer(options: {
  host: string;
  port: number;
  add: (command: AddCommand) => Promise<AddResult>;
  logger: Logger;
  metrics?: GrpcServerMetrics;
  tls?: TlsIdentity;
  /** Add needs `authorization: Bearer <token>` metadata when set. */
  writeToken?: string;
}): Promise<CalculatorGrpcServer> {
  const protos = loadCalculatorProtos();
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 });

  const add: grpc.handleUnaryCall<AddRequestMessage, AddResponseMessage> = (call, callback) => {
    const request = call.request;
    if (options.writeToken !== undefined && !bearerTokenMatches(call.metadata.get('authorization')[0], options.writeToken)) {
      callback({ code: grpc.status.UNAUTHENTICATED, details: 'Add needs "authorization: Bearer <token>" metadata with the write token' });
      return;
    }
    if (isMalformed(request)) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: 'the request is not a valid AddRequest message' });
      return;
    }
    // proto3 cannot tell an empty string from an absent one: both mean "assign an id".
    const requestId = request.request_id === '' ? undefined : request.request_id;
    Promise.resolve()
      .then(() => options.add(buildAddCommand({ num1: request.num1, num2: request.num2, requestId })))
      .then(
        (result) => callback(null, { sum: result.sum.toString(), request_id: result.requestId, replayed: result.replayed }),
        (error: unknown) => {
          const failure = toSummaError(error);
          if (failure.code === 'INTERNAL') options.logger.error({ err: failure.cause ?? failure }, 'Add failed');
          callback({ code: grpcStatusOf(failure), details: failure.message });
        },
      );
  };

  const instrumented = (service: string) => {
    const traced = withGrpcServerSpan(service, 'Add', add);
    return options.metrics ? withGrpcServerMetrics(options.metrics, service, 'Add', traced) : traced;
  };
  server.addService(withTolerantDecoding(protos.service), { Add: instrumented(CALCULATOR_SERVICE_NAME) });
  server.addService(withTolerantDecoding(protos.compatService), { Add: instrumented('CalculatorService') });
  withTopLevelNamesFixed(new ReflectionService(protos.packageDefinition)).addToServer(server);
  const health = new HealthImplementation({ '': 'SERVING', [CALCULATOR_SERVICE_NAME]: 'SERVING', CalculatorService: 'SERVING' });
  health.addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${options.host}:${options.port}`, credentialsFor(options.tls), (error, boundPort) =>
      error ? reject(error) : resolve(boundPort),
    );
  });

  const markNotServing = () => {
    for (const name of ['', CALCULATOR_SERVICE_NAME, 'CalculatorService']) health.setStatus(name, 'NOT_SERVING');
  };
  return {
    port,
    health,
    markNotServing,
    shutdown: (timeoutMs = 10_000) =>
      new Promise<void>((resolve) => {
        markNotServing();
        const force = setTimeout(() => server.forceShutdown(), timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

function credentialsFor(tls: TlsIdentity | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(null, [{ private_key: tls.key, cert_chain: tls.cert }], false);
}

const MALFORMED = Symbol('malformed request');

function isMalformed(request: unknown): boolean {
  return typeof request === 'object' && request !== null && MALFORMED in request;
}

/**
 * grpc-js answers a message that does not decode with INTERNAL, as if the server were at fault.
 * Decoding that never throws lets the handler answer INVALID_ARGUMENT instead.
 */
function withTolerantDecoding(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const tolerant: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    const decode = method.requestDeserialize;
    tolerant[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch {
          return { [MALFORMED]: true };
        }
      },
    };
  }
  return tolerant;
}

/**
 * @grpc/reflection indexes the symbols of a package-less file as ".CalculatorService", so clients
 * that ask for "CalculatorService" (as grpcurl does) would get NOT_FOUND. Index them under their
 * proper fully-qualified names too.
 */
function withTopLevelNamesFixed(reflection: ReflectionService): ReflectionService {
  type Index = Record<string, unknown>;
  const implementations = reflection as unknown as Record<'v1' | 'v1Alpha', { symbols: Index; services: Index }>;
  for (const implementation of [implementations.v1, implementations.v1Alpha]) {
    for (const index of [implementation.symbols, implementation.services]) {
      for (const name of Object.keys(index)) {
        if (name.startsWith('.')) {
          index[name.slice(1)] = index[name];
          delete index[name];
        }
      }
    }
  }
  return reflection;
}
