import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { loadCalculatorProtos, type AddResponseMessage } from '../../src/calculator/proto.ts';

export interface AddCall {
  num1: bigint | number | string;
  num2: bigint | number | string;
  requestId?: string;
}

/** A real grpc-js client of the calculator, promisified. */
export class CalculatorClient {
  private readonly client: grpc.Client & Record<string, Function>;

  private readonly metadata = new grpc.Metadata();

  /** `ca`: use TLS and trust this CA; `token`: sent as the bearer token of every call. */
  constructor(address: string, options: { compat?: boolean; ca?: Buffer; token?: string; channelOptions?: grpc.ChannelOptions } = {}) {
    const protos = loadCalculatorProtos();
    const Client = options.compat ? protos.CompatClient : protos.Client;
    const credentials = options.ca ? grpc.credentials.createSsl(options.ca) : grpc.credentials.createInsecure();
    this.client = new Client(address, credentials, options.channelOptions) as grpc.Client & Record<string, Function>;
    if (options.token !== undefined) this.metadata.set('authorization', `Bearer ${options.token}`);
  }

  add(call: AddCall, deadlineMs = 10_000): Promise<AddResponseMessage> {
    return new Promise((resolve, reject) => {
      this.client.Add!(
        { num1: call.num1.toString(), num2: call.num2.toString(), request_id: call.requestId ?? '' },
        this.metadata,
        { deadline: Date.now() + deadlineMs },
        (error: grpc.ServiceError | null, response: AddResponseMessage) => (error ? reject(error) : resolve(response)),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

const require = createRequire(import.meta.url);

/** Lists the services a server exposes through gRPC server reflection (v1). */
export async function listServicesByReflection(address: string): Promise<string[]> {
  const protoFile = require.resolve('@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');
  const definition = protoLoader.loadSync(protoFile, { keepCase: true });
  const loaded = grpc.loadPackageDefinition(definition) as any;
  const client = new loaded.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) => {
      const stream = client.ServerReflectionInfo();
      stream.on('data', (response: any) => {
        resolve(response.list_services_response.service.map((service: { name: string }) => service.name));
        stream.end();
      });
      stream.on('error', reject);
      stream.write({ list_services: '' });
    });
  } finally {
    client.close();
  }
}

/** The standard gRPC health check's answer for one service name. */
export async function checkHealth(address: string, service: string): Promise<string> {
  const definition = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
  const loaded = grpc.loadPackageDefinition(definition) as any;
  const client = new loaded.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) =>
      client.Check({ service }, (error: Error | null, response: { status: string }) => (error ? reject(error) : resolve(response.status))),
    );
  } finally {
    client.close();
  }
}
