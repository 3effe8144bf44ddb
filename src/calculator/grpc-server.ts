import type { GrpcServerMetrics } from '../platform/grpc/server-metrics.ts';
import { startGrpcServer, type GrpcServer } from '../platform/grpc/server.ts';
import type { Logger } from '../platform/logger.ts';
import type { TlsIdentity } from '../platform/security.ts';
import type { AddCommand, AddResult } from './add-command.ts';
import { calculatorGrpcRoutes } from './grpc-routes.ts';
import { loadCalculatorProtos } from './proto.ts';

export type CalculatorGrpcServer = GrpcServer;

/** The calculator's gRPC server: its routes on the platform gRPC server, with reflection over its protos. */
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
  return startGrpcServer({
    host: options.host,
    port: options.port,
    tls: options.tls,
    services: calculatorGrpcRoutes(protos, options.add, options),
    reflection: protos.packageDefinition,
  });
}
