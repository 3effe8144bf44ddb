// R1, the benchmark's ceiling: a bare grpc-js server with Summa's proto that validates and answers
// Add in memory, without any I/O. Prints its port on stdout once it listens.
import * as grpc from '@grpc/grpc-js';
import { buildAddCommand } from '../../src/calculator/add-command.ts';
import { loadCalculatorProtos, type AddRequestMessage, type AddResponseMessage } from '../../src/calculator/proto.ts';

const protos = loadCalculatorProtos();
const server = new grpc.Server();
const add: grpc.handleUnaryCall<AddRequestMessage, AddResponseMessage> = (call, callback) => {
  try {
    const request = call.request;
    const command = buildAddCommand({ num1: request.num1, num2: request.num2, requestId: request.request_id || undefined });
    callback(null, { sum: command.sum.toString(), request_id: command.requestId, replayed: false });
  } catch (error) {
    callback({ code: grpc.status.INVALID_ARGUMENT, details: (error as Error).message });
  }
};
server.addService(protos.service, { Add: add });

const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync(`127.0.0.1:${process.env.ECHO_PORT ?? '0'}`, grpc.ServerCredentials.createInsecure(), (error, bound) =>
    error ? reject(error) : resolve(bound),
  ),
);
console.log(`listening ${port}`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => server.tryShutdown(() => process.exit(0)));
}
