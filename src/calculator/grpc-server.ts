import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { toSummaError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import { buildAddCommand, type AddCommand, type AddResult } from './add-command.ts';
import { loadCalculatorProtos, type AddRequestMessage, type AddResponseMessage } from './proto.ts';

export const CALCULATOR_SERVICE_NAME = 'summa.v1.CalculatorService';

export interface CalculatorGrpcServer {
  readonly port: number;
  readonly health: HealthImplementation;
  /** Stops taking new calls and waits for the ones in flight. */
  shutdown(): Promise<void>;
}

export async function startCalculatorGrpcServer(options: {
  host: string;
  port: number;
  add: (command: AddCommand) => Promise<AddResult>;
  logger: Logger;
}): Promise<CalculatorGrpcServer> {
  const protos = loadCalculatorProtos();
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 });

  const add: grpc.handleUnaryCall<AddRequestMessage, AddResponseMessage> = (call, callback) => {
    const request = call.request;
    // proto3 cannot tell an empty string from an absent one: both mean "assign an id".
    const requestId = request.request_id === '' ? undefined : request.request_id;
    Promise.resolve()
      .then(() => options.add(buildAddCommand({ num1: request.num1, num2: request.num2, requestId })))
      .then(
        (result) => callback(null, { sum: result.sum.toString(), request_id: result.requestId, replayed: result.replayed }),
        (error: unknown) => {
          const failure = toSummaError(error);
          if (failure.code === 'INTERNAL') options.logger.error({ err: failure.cause ?? failure }, 'Add failed');
          callback({ code: failure.grpcStatus, details: failure.message });
        },
      );
  };

  server.addService(protos.service, { Add: add });
  server.addService(protos.compatService, { Add: add });
  withTopLevelNamesFixed(new ReflectionService(protos.packageDefinition)).addToServer(server);
  const health = new HealthImplementation({ '': 'SERVING', [CALCULATOR_SERVICE_NAME]: 'SERVING', CalculatorService: 'SERVING' });
  health.addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${options.host}:${options.port}`, grpc.ServerCredentials.createInsecure(), (error, boundPort) =>
      error ? reject(error) : resolve(boundPort),
    );
  });

  return {
    port,
    health,
    shutdown: () =>
      new Promise<void>((resolve) => {
        for (const name of ['', CALCULATOR_SERVICE_NAME, 'CalculatorService']) health.setStatus(name, 'NOT_SERVING');
        const force = setTimeout(() => server.forceShutdown(), 10_000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
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
