// The whole system of one topology, up: the stack (Kafka, PostgreSQL and its replica), every
// service instance as a process, and nginx in front of the calculators and the totals when the
// topology has it. The chaos harness and the cluster end-to-end test both start it this way.
import path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { freePort } from '../../tools/lib/free-port.ts';
import { ensureTool } from '../../tools/lib/tools.ts';
import { startNginxServer } from '../../tools/local-stack/nginx-server.ts';
import type { CalculatorEndpoint } from '../../tools/load/retrying-clients.ts';
import { ChaosService, type ServiceName } from './processes.ts';
import { startChaosStack, type ChaosStack } from './stack.ts';
import { componentOf, serviceInstances, type ChaosTopology } from './topology.ts';

export const TOPIC = 'chaos.sums';
export const DEAD_LETTER_TOPIC = 'chaos.sums.dlq';
export const GROUP_ID = 'chaos-totals';

export interface ChaosSystem {
  topology: ChaosTopology;
  stack: ChaosStack;
  /** Every service instance, calculators first. */
  services: ChaosService[];
  /** Where clients send Adds: nginx alone, or every calculator. */
  calculators: CalculatorEndpoint[];
  /** Each calculator's own address, behind nginx or not. */
  calculatorInstances: Map<string, CalculatorEndpoint>;
  /** Where totals-N serves HTTP (its /metrics, /total). */
  totalsUrls: Map<string, string>;
  /** Where clients read the total: nginx, or the first totals instance. */
  totalsUrl: string;
  topic: string;
  groupId: string;
  /** Everything down, hard: the services, nginx, the stack. */
  teardown(): Promise<void>;
}

export interface SystemOptions {
  /** Extra settings for every service, e.g. a short relay lease. */
  env?: Record<string, string>;
  log?: (line: string) => void;
}

export async function startSystem(topology: ChaosTopology, workDir: string, options: SystemOptions = {}): Promise<ChaosSystem> {
  const log = options.log ?? (() => {});
  const logs = path.join(workDir, 'logs');
  await mkdir(logs, { recursive: true });
  const services: ChaosService[] = [];
  const teardowns: (() => Promise<unknown>)[] = [];
  const teardown = async () => {
    await Promise.allSettled(services.map((service) => service.kill()));
    for (const down of teardowns.reverse()) await down().catch(() => {});
  };
  try {
    const stack = await startChaosStack(topology, workDir, { topic: TOPIC, deadLetterTopic: DEAD_LETTER_TOPIC, groupId: GROUP_ID }, log);
    teardowns.push(() => stack.teardown());
    const common: Record<string, string> = {
      DATABASE_URL: stack.databaseUrl,
      KAFKA_TOPIC: TOPIC,
      TOTALS_DEAD_LETTER_TOPIC: DEAD_LETTER_TOPIC,
      KAFKA_TOPIC_PARTITIONS: String(topology.partitions),
      TOTALS_GROUP_ID: GROUP_ID,
      LOG_LEVEL: 'warn',
      ...options.env,
    };
    const calculatorInstances = new Map<string, CalculatorEndpoint>();
    const totalsUrls = new Map<string, string>();
    for (const name of serviceInstances(topology)) {
      const service = componentOf(name) as ServiceName;
      const [httpPort, grpcPort] = await Promise.all([freePort(), freePort()]);
      const env: Record<string, string> = { ...common };
      if (service === 'calculator') {
        Object.assign(env, { CALCULATOR_HTTP_PORT: String(httpPort), CALCULATOR_GRPC_PORT: String(grpcPort) });
        calculatorInstances.set(name, { grpcAddress: `127.0.0.1:${grpcPort}`, httpUrl: `http://127.0.0.1:${httpPort}` });
      }
      if (service === 'relay') Object.assign(env, stack.kafkaEnv('relay'), { RELAY_HTTP_PORT: String(httpPort) });
      if (service === 'totals') {
        Object.assign(env, stack.kafkaEnv('totals'), { TOTALS_HTTP_PORT: String(httpPort) });
        if (stack.readDatabaseUrl) env.TOTALS_READ_DATABASE_URL = stack.readDatabaseUrl;
        totalsUrls.set(name, `http://127.0.0.1:${httpPort}`);
      }
      services.push(new ChaosService(service, name, env, `http://127.0.0.1:${httpPort}/readyz`, path.join(logs, `${name}.log`)));
    }
    // The first calculator creates the schemas; the others start together.
    await services[0]!.start();
    await Promise.all(services.slice(1).map((service) => service.start()));
    log(`services up (${services.map((s) => s.name).join(', ')})`);

    let calculators = [...calculatorInstances.values()];
    let totalsUrl = [...totalsUrls.values()][0]!;
    if (topology.loadBalancer) {
      const nginx = await startBalancer(path.join(workDir, 'nginx'), [...calculatorInstances.values()], [...totalsUrls.values()]);
      teardowns.push(() => nginx.server.kill());
      calculators = [nginx.calculator];
      totalsUrl = nginx.totalsUrl;
      log(`nginx: gRPC ${nginx.calculator.grpcAddress}, HTTP ${nginx.calculator.httpUrl}, totals ${nginx.totalsUrl}`);
    }
    return { topology, stack, services, calculators, calculatorInstances, totalsUrls, totalsUrl, topic: TOPIC, groupId: GROUP_ID, teardown };
  } catch (error) {
    await teardown();
    throw error;
  }
}

/**
 * nginx as `npm start -- --cluster` runs it, on free ports: gRPC and HTTP in front of the
 * calculators, HTTP in front of the totals services (one that answers 502-504, not ready, is passed
 * over).
 */
async function startBalancer(dataDir: string, calculators: CalculatorEndpoint[], totals: string[]) {
  const binary = await ensureTool('nginx');
  if (!binary) throw new Error('nginx is needed in front of the calculators and could not be had (tools/setup/30-nginx.sh)');
  const portOf = (url: string) => Number(new URL(url.includes('://') ? url : `http://${url}`).port);
  const [grpcPort, httpPort, totalsPort] = [await freePort(), await freePort(), await freePort()];
  const server = await startNginxServer({
    dataDir,
    binary,
    proxies: [
      { name: 'calculators_grpc', protocol: 'grpc', listenPort: grpcPort, upstreamPorts: calculators.map((c) => portOf(c.grpcAddress)) },
      { name: 'calculators_http', protocol: 'http', listenPort: httpPort, upstreamPorts: calculators.map((c) => portOf(c.httpUrl)) },
      { name: 'totals_http', protocol: 'http', listenPort: totalsPort, upstreamPorts: totals.map(portOf), retryOnStatus: [502, 503, 504] },
    ],
  });
  return {
    server,
    calculator: { grpcAddress: `127.0.0.1:${grpcPort}`, httpUrl: `http://127.0.0.1:${httpPort}` },
    totalsUrl: `http://127.0.0.1:${totalsPort}`,
  };
}
