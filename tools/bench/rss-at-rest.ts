// `npm run bench:rss [-- --settle-seconds N]`: the resident memory of each service of a
// single-node `npm start` at rest. Starts its own run (a temporary data folder, free ports), waits
// until it is up and has settled, reads VmRSS from /proc for the pids in the run state, and stops it.
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readRunState } from '../../src/cli/run-state.ts';
import { freePort } from '../lib/free-port.ts';
import { repoRoot } from '../lib/paths.ts';

const { values } = parseArgs({ options: { 'settle-seconds': { type: 'string', default: '30' } } });
const settleSeconds = Number(values['settle-seconds']);
if (!Number.isFinite(settleSeconds) || settleSeconds < 0) throw new Error('--settle-seconds must be a number of seconds ≥ 0');

const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

/** VmRSS, and its file-backed part (mostly node's own binary, shared by every node process). */
async function residentParts(pid: number): Promise<{ rss: number; file: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1]);
  return { rss: mb(kb('VmRSS') * 1024), file: mb(kb('RssFile') * 1024) };
}

/**
 * The resident pages by kind of mapping, from /proc/<pid>/smaps: files (node's binary, shared
 * libraries), the C heap grown by brk (`[heap]`: malloc's main arena), thread stacks, and the
 * rest of the anonymous mappings (V8's heap pages, and malloc's arenas for the other threads).
 */
async function residentByMapping(pid: number): Promise<Record<string, number>> {
  const smaps = await readFile(`/proc/${pid}/smaps`, 'utf8');
  const kb: Record<string, number> = { file_mappings: 0, malloc_brk_heap: 0, stacks: 0, other_anonymous: 0 };
  let kind = 'other_anonymous';
  for (const line of smaps.split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (header) {
      const name = header[1]!;
      kind = name === '[heap]' ? 'malloc_brk_heap' : name.startsWith('[stack') ? 'stacks' : name.startsWith('/') ? 'file_mappings' : 'other_anonymous';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    if (rss) kb[kind]! += Number(rss[1]);
  }
  return Object.fromEntries(Object.entries(kb).map(([name, value]) => [name, mb(value * 1024)]));
}

/** Where the anonymous part goes: V8's heap (committed and used, new space apart) from the service's /metrics. */
async function heapMb(healthUrl: string | undefined): Promise<Record<string, number>> {
  if (!healthUrl) return {};
  const text = await (await fetch(new URL('/metrics', healthUrl))).text();
  // Lines such as `nodejs_heap_space_size_total_bytes{space="new",service="relay"} 33554432`.
  const value = (name: string, space?: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && (space === undefined || l.includes(`space="${space}"`)));
    return Number(line?.split(' ').at(-1) ?? NaN);
  };
  return {
    heap_committed: mb(value('nodejs_heap_size_total_bytes')),
    heap_used: mb(value('nodejs_heap_size_used_bytes')),
    new_space_committed: mb(value('nodejs_heap_space_size_total_bytes', 'new')),
    old_space_committed: mb(value('nodejs_heap_space_size_total_bytes', 'old')),
    external: mb(value('nodejs_external_memory_bytes')),
  };
}

const dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-rss-'));
await chmod(dataDir, 0o755); // as root, PostgreSQL runs as "postgres", which must enter it
const [postgres, kafka, controller, grpc, calculatorHttp, relayHttp, totalsHttp] = await Promise.all(Array.from({ length: 7 }, () => freePort()));
const env = {
  ...process.env,
  SUMMA_DATA_DIR: dataDir,
  SUMMA_POSTGRES_PORT: String(postgres),
  SUMMA_KAFKA_PORT: String(kafka),
  SUMMA_KAFKA_CONTROLLER_PORT: String(controller),
  CALCULATOR_GRPC_PORT: String(grpc),
  CALCULATOR_HTTP_PORT: String(calculatorHttp),
  RELAY_HTTP_PORT: String(relayHttp),
  TOTALS_HTTP_PORT: String(totalsHttp),
};
// What `npm start` runs.
const launcher = spawn(process.execPath, ['tools/with-dependencies.mjs', '--build', 'tools/local-stack/launcher.ts'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'inherit'] });
const exited = new Promise((resolve) => launcher.once('exit', resolve));
try {
  await new Promise<void>((resolve, reject) => {
    let output = '';
    launcher.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Summa is running.')) resolve();
    });
    launcher.once('exit', (code) => reject(new Error(`npm start exited (${code}) before it was running:\n${output}`)));
  });
  await new Promise((resolve) => setTimeout(resolve, settleSeconds * 1000));
  const state = await readRunState(dataDir);
  const rss: Record<string, number> = {};
  const breakdown: Record<string, Record<string, number>> = {};
  for (const component of state?.components ?? []) {
    if (!['calculator', 'relay', 'totals'].includes(component.role) || component.pid === null) continue;
    const resident = await residentParts(component.pid);
    rss[component.name] = resident.rss;
    breakdown[component.name] = { rss_file_backed: resident.file, ...(await residentByMapping(component.pid)), ...(await heapMb(component.healthUrl)) };
  }
  console.log(JSON.stringify({ settle_seconds: settleSeconds, node_options: process.env.NODE_OPTIONS ?? '', rss_at_rest_mb: rss, breakdown_mb: breakdown }));
} finally {
  launcher.kill('SIGINT');
  await exited;
  await rm(dataDir, { recursive: true, force: true });
}
