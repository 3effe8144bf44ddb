// The calculator's Add over gRPC, for `summa load`: one channel, calls with a deadline each.
import * as grpc from '@grpc/grpc-js';
import { loadCalculatorProtos, type AddResponseMessage } from '../calculator/proto.ts';
import { networkReason, ServiceDownError } from './ops-command.ts';

export class CalculatorGrpcClient {
  private readonly client: grpc.Client & Record<string, Function>;
  private readonly metadata = new grpc.Metadata();

  constructor(
    readonly address: string,
    options: { ca?: Buffer | undefined; writeToken?: string | undefined } = {},
  ) {
    const { Client } = loadCalculatorProtos();
    const credentials = options.ca ? grpc.credentials.createSsl(options.ca) : grpc.credentials.createInsecure();
    this.client = new Client(address, credentials) as grpc.Client & Record<string, Function>;
    if (options.writeToken) this.metadata.set('authorization', `Bearer ${options.writeToken}`);
  }

  /** Resolves once the channel is connected; a calculator that cannot be reached in time is down. */
  async connect(timeoutMs: number): Promise<void> {
    await new Promise<void>((resolve, reject) =>
      this.client.waitForReady(Date.now() + timeoutMs, (error) =>
        error ? reject(new ServiceDownError('calculator', this.address, `no gRPC connection within ${timeoutMs / 1000} s`, { cause: error })) : resolve(),
      ),
    ).catch((error: unknown) => {
      throw error instanceof ServiceDownError ? error : new ServiceDownError('calculator', this.address, networkReason(error), { cause: error });
    });
  }

  add(num1: bigint, num2: bigint, requestId: string, deadlineMs: number): Promise<AddResponseMessage> {
    return new Promise((resolve, reject) =>
      this.client.Add!(
        { num1: num1.toString(), num2: num2.toString(), request_id: requestId },
        this.metadata,
        { deadline: Date.now() + deadlineMs },
        (error: grpc.ServiceError | null, value: AddResponseMessage) => (error ? reject(error) : resolve(value)),
      ),
    );
  }

  close(): void {
    this.client.close();
  }
}

/**
 * Whether a failed Add may still have been recorded. A refusal the server gave for the request
 * itself (bad input, no permission, overloaded at the door) was not; a lost answer may have been.
 */
export function outcomeUnknown(error: unknown): boolean {
  const definite: number[] = [
    grpc.status.INVALID_ARGUMENT,
    grpc.status.OUT_OF_RANGE,
    grpc.status.ALREADY_EXISTS,
    grpc.status.UNAUTHENTICATED,
    grpc.status.PERMISSION_DENIED,
    grpc.status.RESOURCE_EXHAUSTED,
    grpc.status.FAILED_PRECONDITION,
    grpc.status.UNIMPLEMENTED,
  ];
  return !definite.includes((error as grpc.ServiceError).code);
}

export function statusName(error: unknown): string {
  const code = (error as grpc.ServiceError).code;
  return code === undefined ? 'ERROR' : (grpc.status[code] ?? String(code));
}
