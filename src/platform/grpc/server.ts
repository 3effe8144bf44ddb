import * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { HealthImplementation, type ServingStatusMap } from 'grpc-health-check';
import type { TlsIdentity } from '../security.ts';
import { reflectionServiceFor } from './reflection.ts';
import { withTolerantDecoding } from './tolerant-decoding.ts';

export interface GrpcService {
  /** The fully-qualified service name, as health checks ask for it. */
  readonly name: string;
  readonly definition: grpc.ServiceDefinition;
  readonly implementation: grpc.UntypedServiceImplementation;
}

export interface GrpcServerOptions {
  host: string;
  port: number;
  services: readonly GrpcService[];
  /** What reflection describes: the services' protos, and any other the server answers (health). */
  reflection: PackageDefinition;
  /** TLS instead of plaintext when given. */
  tls?: TlsIdentity;
  maxReceiveMessageBytes?: number;
}

export interface GrpcServer {
  readonly port: number;
  readonly health: HealthImplementation;
  /** Health checks answer NOT_SERVING from now on; calls are still served. */
  markNotServing(): void;
  /** Stops taking new calls and waits for the ones in flight (cancels them after `timeoutMs`). */
  shutdown(timeoutMs?: number): Promise<void>;
}

/**
 * A listening gRPC server with what every Summa gRPC server has: `services` with tolerant decoding
 * (handlers check isMalformedRequest), reflection, and health for the server ('') and each service.
 */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? 64 * 1024 });
  for (const service of options.services) server.addService(withTolerantDecoding(service.definition), service.implementation);
  reflectionServiceFor(options.reflection).addToServer(server);
  const healthNames = ['', ...options.services.map((service) => service.name)];
  const health = new HealthImplementation(Object.fromEntries(healthNames.map((name) => [name, 'SERVING'])) as ServingStatusMap);
  health.addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${options.host}:${options.port}`, credentialsFor(options.tls), (error, boundPort) =>
      error ? reject(error) : resolve(boundPort),
    );
  });

  const markNotServing = () => {
    for (const name of healthNames) health.setStatus(name, 'NOT_SERVING');
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
