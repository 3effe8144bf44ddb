// `summa`: a small command line for the running system.
import { randomUUID } from 'node:crypto';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import type { AddResponseMessage } from '../calculator/proto.ts';
import { ConfigError } from '../platform/config.ts';
import { SummaError } from '../platform/errors.ts';
import { parseInt64 } from '../platform/int64.ts';
import { DEFAULT_PORTS } from '../platform/ports.ts';
import { OPS_EXIT, ServiceDownError } from './ops-command.ts';

const DEFAULT_GRPC_ADDRESS = `127.0.0.1:${DEFAULT_PORTS.calculatorGrpc}`;
const DEFAULT_TOTALS_URL = `http://127.0.0.1:${DEFAULT_PORTS.totalsHttp}`;

const USAGE = `usage:
  summa add <num1> <num2> [--id <request id>]   add two int64 numbers (retry with the same --id safely; without one, an id is made and printed)
  summa total                                    print the running total
  summa sum <request id>                          whether that request's sum was applied
  summa verify [--wait <s>] [--grace <s>] [--max-outbox-age <s>] [--edge-seconds <s>] [--idempotency-window-seconds <s>] [--json]
                                                 audit "no sum lost, none counted twice" in the databases: the periods kept
                                                 request by request, the dropped ones through their checkpoints; exit 0 it
                                                 holds, 1 broken, 3 relay stuck, 4 in flight after --wait, 5 could not audit,
                                                 6 events quarantined as older than the dedup window (decide with summa dlq)
  summa dlq list [--all] [--limit <n>] [--json]   the records parked as not valid events
  summa dlq replay <topic>/<partition>/<offset>... | --all [--dry-run] [--json]
                                                 apply parked records that are valid events, once
                                                 (summa dlq --help tells more)
  summa outbox parked                             events the relays parked (failed too often on their own)
  summa outbox release (<event id>... | --all)    hand parked events back to the relays, attempts reset
  summa status [--json]                           every component npm start runs (role, pid, ports, health), Kafka
                                                 brokers and the partitions they lead, PostgreSQL replication lag,
                                                 consumer lag per partition, the capture slot under --relay debezium;
                                                 exit 0 all healthy, 1 something is not, 3 nothing is running from the
                                                 data folder, 4 all healthy but a warning (a slot holding WAL)
  summa logs [<service>] [-f] [-n <lines>]        the components' logs of a running npm start; -f follows them
  summa stop [--timeout <s>] [--json]             stop a running npm start from another terminal
  summa load [--rate <n> | --concurrency <n>] [--duration <s>] [--ids-repeat <p>] [--json]
                                                 a quick load run, checked: the total moves by exactly what was acknowledged
  summa watch [--interval <s>] [--count <n>] [--json]
                                                 the total, its count and the rates, refreshed
                                                 (summa <command> --help tells more, with examples and exit codes)

environment:
  CALCULATOR_GRPC_ADDRESS  default: the running npm start's (its run state), else ${DEFAULT_GRPC_ADDRESS}
  TOTALS_URL               default: the running npm start's, else ${DEFAULT_TOTALS_URL} (https://... when the services use TLS)
  TLS_CA_FILE              trust this CA (PEM) and use TLS for gRPC; also used for https:// TOTALS_URL (default: the CA
                           the running npm start's services use, from its run state)
  SUMMA_WRITE_TOKEN        sent as "authorization: Bearer <token>" with add
  SUMMA_DATA_DIR           (status, logs, stop, load, watch) the data folder npm start ran from, default <repo>/.data
  SUMMA_STATUS_TIMEOUT_MS  (status) how long each component may take to answer, default 2000
  CAPTURE_SLOT_MAX_RETAINED_MB, CAPTURE_SLOT_MAX_INACTIVE_SECONDS
                           (status) the capture slot is a warning above these, default 1024 MiB and 300 s
  DATABASE_URL             (verify, dlq, outbox) default: the database npm start runs; CALCULATOR_DATABASE_URL
                           and TOTALS_DATABASE_URL override it per schema`;

/** Unless told otherwise, the commands that read the databases read the one `npm start` runs. */
function withNpmStartDatabase(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  return { DATABASE_URL: `postgres://summa:summa@127.0.0.1:${env.SUMMA_POSTGRES_PORT ?? 55432}/summa`, ...env };
}

/** parseArgs, with a bad command line told in one line and exit code 2 rather than a stack trace. */
function parseCommandLine<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    console.error(`summa: ${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}

// parseArgs would take a negative number ("-5") for an option: such arguments stand in for
// themselves behind a placeholder that reads as a positional, and are put back afterwards.
const args = process.argv.slice(2);
// `summa dlq` has subcommands with options of their own, and exit codes of its own.
if (args[0] === 'dlq') {
  const { runDlqCommand } = await import('./dlq-command.ts');
  process.exit(await runDlqCommand(args.slice(1), withNpmStartDatabase(process.env)));
}
// So do the operator's commands: their options are their own, their exit codes shared (ops-command.ts).
const OPS_COMMANDS: Record<string, () => Promise<(args: string[], env: NodeJS.ProcessEnv) => Promise<number>>> = {
  logs: async () => (await import('./logs-command.ts')).runLogsCommand,
  stop: async () => (await import('./stop-command.ts')).runStopCommand,
  load: async () => (await import('./load-command.ts')).runLoadCommand,
  watch: async () => (await import('./watch-command.ts')).runWatchCommand,
};
const opsCommand = OPS_COMMANDS[args[0] ?? ''];
if (opsCommand) {
  const run = await opsCommand();
  process.exit(await run(args.slice(1), process.env));
}
const placeholder = (index: number) => `\u0000${index}`;
const restore = (value: string) => (value.startsWith('\u0000') ? args[Number(value.slice(1))]! : value);
const parsed = parseCommandLine({
  args: args.map((arg, index) => (/^-\d/.test(arg) ? placeholder(index) : arg)),
  allowPositionals: true,
  options: {
    id: { type: 'string' },
    wait: { type: 'string' },
    grace: { type: 'string' },
    'max-outbox-age': { type: 'string' },
    'edge-seconds': { type: 'string' },
    'idempotency-window-seconds': { type: 'string' },
    json: { type: 'boolean' },
    all: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
const positionals = parsed.positionals.map(restore);
const values = Object.fromEntries(
  Object.entries(parsed.values).map(([name, value]) => [name, typeof value === 'string' ? restore(value) : value]),
) as typeof parsed.values;
const [command, ...rest] = positionals;

async function add(num1: string, num2: string, requestId: string | undefined): Promise<void> {
  // Checked here too: the gRPC encoder would turn a word into 0 and send it.
  parseInt64(num1, 'num1');
  parseInt64(num2, 'num2');
  // Loaded here, not at the top: the commands that do not speak gRPC start a second sooner without it.
  const grpcJs = await import('@grpc/grpc-js');
  const { loadCalculatorProtos } = await import('../calculator/proto.ts');
  const { Client } = loadCalculatorProtos();
  const { resolveTargets } = await import('./targets.ts');
  const { grpcAddress: address, ca } = await resolveTargets(process.env);
  const credentials = ca ? grpcJs.credentials.createSsl(ca) : grpcJs.credentials.createInsecure();
  const client = new Client(address, credentials) as grpc.Client & Record<string, Function>;
  const metadata = new grpcJs.Metadata();
  const token = process.env.SUMMA_WRITE_TOKEN?.trim();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  // An id of our own rather than the server's: if the answer is lost, the sum can be sent again
  // under it without being counted twice.
  const id = requestId ?? randomUUID();
  try {
    const response = await new Promise<AddResponseMessage>((resolve, reject) =>
      client.Add!({ num1, num2, request_id: id }, metadata, { deadline: Date.now() + 10_000 }, (error: Error | null, value: AddResponseMessage) =>
        error ? reject(error) : resolve(value),
      ),
    );
    console.log(`${num1} + ${num2} = ${response.sum}  (request id ${response.request_id}${response.replayed ? ', replayed' : ''})`);
  } catch (error) {
    const code = (error as grpc.ServiceError).code;
    if (code === grpcJs.status.UNAVAILABLE || code === grpcJs.status.DEADLINE_EXCEEDED || code === grpcJs.status.CANCELLED) {
      throw new Error(
        `${(error as grpc.ServiceError).details || (error as Error).message}\n` +
          `the sum may or may not have been recorded; retrying is safe: summa add ${num1} ${num2} --id ${id}`,
        { cause: error },
      );
    }
    throw error;
  } finally {
    client.close();
  }
}

/** GET on the totals service: TOTALS_URL, else the run state's, else the default. A service that is down is named. */
async function getJson(pathname: string): Promise<{ status: number; body: any }> {
  const { resolveTargets, getText } = await import('./targets.ts');
  const targets = await resolveTargets(process.env);
  const { status, text } = await getText(new URL(pathname, targets.totalsUrl).toString(), 'totals service', targets.ca ? { ca: targets.ca } : {});
  return { status, body: JSON.parse(text) };
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
    case 'verify': {
      if (rest.length > 0) break;
      const { parseSeconds, runVerifyCommand } = await import('./verify-command.ts');
      return runVerifyCommand(withNpmStartDatabase(process.env), {
        waitSeconds: parseSeconds('--wait', values.wait, 0),
        graceSeconds: parseSeconds('--grace', values.grace, 30),
        maxOutboxAgeSeconds: parseSeconds('--max-outbox-age', values['max-outbox-age'], 300),
        edgeSeconds: parseSeconds('--edge-seconds', values['edge-seconds'], 60),
        // The calculator's own setting, when this runs where the calculator's environment is.
        idempotencyWindowSeconds: parseSeconds(
          '--idempotency-window-seconds',
          values['idempotency-window-seconds'],
          parseSeconds('IDEMPOTENCY_WINDOW_SECONDS', process.env.IDEMPOTENCY_WINDOW_SECONDS?.trim() || undefined, 7 * 86_400),
        ),
        json: values.json ?? false,
      });
    }
    case 'status': {
      if (rest.length > 0) break;
      const { runStatusCommand } = await import('./status-command.ts');
      return runStatusCommand(process.env, { json: values.json ?? false });
    }
    case 'outbox': {
      const [action, ...eventIds] = rest;
      const { runOutboxCommand } = await import('./outbox-command.ts');
      const code = await runOutboxCommand(withNpmStartDatabase(process.env), { action, eventIds, all: values.all ?? false });
      if (code !== 2) return code;
      break;
    }
  }
  console.error(USAGE);
  return 2;
}

main().then(
  (code) => process.exit(code),
  (error: any) => {
    console.error(`summa: ${error.details ?? error.message}`);
    // A usage error (bad numbers, a bad option value) is 2, like a bad command line; a service that
    // is down is 4, as for the operator's commands; a refusal or failure is 1.
    process.exit(error instanceof SummaError || error instanceof ConfigError ? 2 : error instanceof ServiceDownError ? OPS_EXIT.serviceDown : 1);
  },
);
