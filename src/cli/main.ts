// `summa`: a small command line for the running system.
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadCalculatorProtos, type AddResponseMessage } from '../calculator/proto.ts';

const USAGE = `usage:
  summa add <num1> <num2> [--id <request id>]   add two int64 numbers (retry with the same --id safely)
  summa total                                    print the running total
  summa sum <request id>                          whether that request's sum was applied

environment:
  CALCULATOR_GRPC_ADDRESS  default 127.0.0.1:9090
  TOTALS_URL               default http://127.0.0.1:8080`;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { id: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
const [command, ...rest] = positionals;

async function add(num1: string, num2: string, requestId: string | undefined): Promise<void> {
  const { Client } = loadCalculatorProtos();
  const address = process.env.CALCULATOR_GRPC_ADDRESS ?? '127.0.0.1:9090';
  const client = new Client(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
  try {
    const response = await new Promise<AddResponseMessage>((resolve, reject) =>
      client.Add!({ num1, num2, request_id: requestId ?? '' }, { deadline: Date.now() + 10_000 }, (error: Error | null, value: AddResponseMessage) =>
        error ? reject(error) : resolve(value),
      ),
    );
    console.log(`${num1} + ${num2} = ${response.sum}  (request id ${response.request_id}${response.replayed ? ', replayed' : ''})`);
  } finally {
    client.close();
  }
}

async function getJson(pathname: string): Promise<{ status: number; body: any }> {
  const base = process.env.TOTALS_URL ?? 'http://127.0.0.1:8080';
  const response = await fetch(new URL(pathname, base));
  return { status: response.status, body: await response.json() };
}

async function main(): Promise<number> {
  if (values.help || !command) {
    console.log(USAGE);
    return command || values.help ? 0 : 2;
  }
  switch (command) {
    case 'add': {
      const [num1, num2] = rest;
      if (num1 === undefined || num2 === undefined || rest.length > 2) break;
      await add(num1, num2, values.id);
      return 0;
    }
    case 'total': {
      const { body } = await getJson('/total');
      console.log(`total: ${body.total}  (${body.count} sums applied)`);
      return 0;
    }
    case 'sum': {
      const [requestId] = rest;
      if (!requestId) break;
      const { status, body } = await getJson(`/sums/${encodeURIComponent(requestId)}`);
      console.log(status === 200 ? `applied: ${body.sum} at ${body.appliedAt}` : `not applied: ${body.error.message}`);
      return status === 200 ? 0 : 1;
    }
  }
  console.error(USAGE);
  return 2;
}

main().then(
  (code) => process.exit(code),
  (error: any) => {
    console.error(`summa: ${error.details ?? error.message}`);
    process.exit(1);
  },
);
