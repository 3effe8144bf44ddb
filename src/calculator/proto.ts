import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import descriptor, { type IDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor/index.js';

const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));

export const CALCULATOR_PROTO = path.join(PROTO_ROOT, 'summa/v1/calculator.proto');
export const CALCULATOR_COMPAT_PROTO = path.join(PROTO_ROOT, 'calculator_compat.proto');
const HEALTH_PROTO = path.join(PROTO_ROOT, 'grpc/health/v1/health.proto');

/** int64 fields are read and written as decimal strings, so no value is ever rounded. */
const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

export interface AddRequestMessage {
  num1: string;
  num2: string;
  request_id: string;
}

export interface AddResponseMessage {
  sum: string;
  request_id: string;
  replayed: boolean;
}

export interface CalculatorProtos {
  /** Everything the server exposes, for reflection. */
  packageDefinition: protoLoader.PackageDefinition;
  /** summa.v1.CalculatorService */
  service: grpc.ServiceDefinition;
  /** CalculatorService, without a package */
  compatService: grpc.ServiceDefinition;
  /** A client constructor for summa.v1.CalculatorService */
  Client: grpc.ServiceClientConstructor;
  /** A client constructor for the package-less CalculatorService */
  CompatClient: grpc.ServiceClientConstructor;
}

export function loadCalculatorProtos(): CalculatorProtos {
  const options = { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] };
  // Loaded apart: in one protobufjs root, the package-less AddRequest would shadow
  // summa.v1.AddRequest inside summa.v1's own descriptors.
  const packageDefinition = withJsonNames({
    ...protoLoader.loadSync([CALCULATOR_PROTO, HEALTH_PROTO], options),
    ...protoLoader.loadSync(CALCULATOR_COMPAT_PROTO, options),
  });
  const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as {
    summa: { v1: { CalculatorService: grpc.ServiceClientConstructor } };
    CalculatorService: grpc.ServiceClientConstructor;
  };
  return {
    packageDefinition,
    service: loaded.summa.v1.CalculatorService.service,
    compatService: loaded.CalculatorService.service,
    Client: loaded.summa.v1.CalculatorService,
    CompatClient: loaded.CalculatorService,
  };
}

/**
 * protobufjs writes every field's json_name as an empty string into the descriptors that reflection
 * serves, so a reflection client (grpcurl) would print `request_id` where proto3 JSON has
 * `requestId`. Fill in the names protoc would have given.
 */
function withJsonNames(definition: protoLoader.PackageDefinition): protoLoader.PackageDefinition {
  const { FileDescriptorProto } = descriptor; // a CommonJS module: its exports come as the default
  const rewritten = new Map<Buffer, Buffer>();
  const rewrite = (bytes: Buffer): Buffer => {
    let fixed = rewritten.get(bytes);
    if (!fixed) {
      const file = FileDescriptorProto.toObject(FileDescriptorProto.decode(bytes)) as IFileDescriptorProto;
      for (const message of file.messageType ?? []) fillJsonNames(message);
      fixed = Buffer.from(FileDescriptorProto.encode(FileDescriptorProto.fromObject(file)).finish());
      rewritten.set(bytes, fixed);
    }
    return fixed;
  };
  const result: protoLoader.PackageDefinition = {};
  for (const [name, entry] of Object.entries(definition)) {
    const descriptors = (entry as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos;
    result[name] = descriptors ? { ...entry, fileDescriptorProtos: descriptors.map(rewrite) } as typeof entry : entry;
  }
  return result;
}

function fillJsonNames(message: IDescriptorProto): void {
  for (const field of message.field ?? []) {
    if (!field.jsonName && field.name) field.jsonName = field.name.replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
  }
  for (const nested of message.nestedType ?? []) fillJsonNames(nested);
}
