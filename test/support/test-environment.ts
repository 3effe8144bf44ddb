import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** A short random suffix that keeps databases, topics and groups of different tests apart. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the integration tests through \`npm test\`, which starts PostgreSQL and Kafka`);
  }
  return value;
}

export function testKafkaBrokers(): string[] {
  return requireEnv('SUMMA_TEST_KAFKA_BROKERS').split(',');
}

/** The pids of the suite's Kafka broker (a JVM) and PostgreSQL postmaster. */
export function testServerPids(): { kafka: number; postgres: number } {
  return { kafka: Number(requireEnv('SUMMA_TEST_KAFKA_PID')), postgres: Number(requireEnv('SUMMA_TEST_POSTGRES_PID')) };
}

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/** A new, empty database on the test server; drop() removes it. */
export async function createTestDatabase(prefix: string): Promise<TestDatabase> {
  const adminUrl = requireEnv('SUMMA_TEST_POSTGRES_URL');
  const name = uniqueName(prefix).toLowerCase();
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}
