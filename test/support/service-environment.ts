import { freePort } from '../../tools/lib/free-port.ts';
import { testKafkaBrokers, uniqueName } from './test-environment.ts';

/** What the three services of one test need: their environment, and where they will listen. */
export interface ServiceEnvironment {
  env: Record<string, string>;
  grpcAddress: string;
  grpcPort: number;
  calculatorUrl: string;
  relayUrl: string;
  totalsUrl: string;
}

/**
 * The environment for a calculator, relay and totals service of their own: free ports, a topic and
 * a consumer group no other test uses, on the given database and (by default) the suite's Kafka.
 */
export async function serviceEnvironment(options: {
  name: string;
  databaseUrl: string;
  kafkaBrokers?: string;
  partitions?: number;
  /** `https` when the services are given a certificate. */
  scheme?: 'http' | 'https';
}): Promise<ServiceEnvironment> {
  const [grpcPort, calculatorPort, relayPort, totalsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const scheme = options.scheme ?? 'http';
  return {
    env: {
      DATABASE_URL: options.databaseUrl,
      KAFKA_BROKERS: options.kafkaBrokers ?? testKafkaBrokers().join(','),
      KAFKA_TOPIC: uniqueName(`${options.name}-sums`),
      KAFKA_TOPIC_PARTITIONS: String(options.partitions ?? 3),
      TOTALS_GROUP_ID: uniqueName(`${options.name}-totals`),
      CALCULATOR_GRPC_PORT: String(grpcPort),
      CALCULATOR_HTTP_PORT: String(calculatorPort),
      RELAY_HTTP_PORT: String(relayPort),
      TOTALS_HTTP_PORT: String(totalsPort),
    },
    grpcAddress: `127.0.0.1:${grpcPort}`,
    grpcPort,
    calculatorUrl: `${scheme}://127.0.0.1:${calculatorPort}`,
    relayUrl: `${scheme}://127.0.0.1:${relayPort}`,
    totalsUrl: `${scheme}://127.0.0.1:${totalsPort}`,
  };
}
