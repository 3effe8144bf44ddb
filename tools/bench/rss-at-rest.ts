// `npm run bench:rss [-- --settle-seconds N]`: the resident memory of each service of a
// single-node `npm start` at rest. Starts its own run (a temporary data folder, free ports), waits
// until it is up and has settled, reads VmRSS from /proc for the pids in the run state, and stops it.
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readRunState } from '../../src/cli/run-state.ts';
import { freePort } from '../lib/free-port.ts';
import { repoRoot } from '../lib/paths.ts';
import { residentMb } from './process-stats.ts';

const { values } = parseArgs({ options: { 'settle-seconds': { type: 'string', default: '30' } } });
const settleSeconds = Number(values['settle-seconds']);
if (!Number.isFinite(settleSeconds) || settleSeconds < 0) throw new Error('--settle-seconds must be a number of seconds ≥ 0');

const vmRssMb = (pid: number) => Math.round(residentMb(pid) * 10) / 10;

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
  for (const component of state?.components ?? []) {
    if (['calculator', 'relay', 'totals'].includes(component.role) && component.pid !== null) rss[component.name] = vmRssMb(component.pid);
  }
  console.log(JSON.stringify({ settle_seconds: settleSeconds, rss_at_rest_mb: rss }));
} finally {
  launcher.kill('SIGINT');
  await exited;
  await rm(dataDir, { recursive: true, force: true });
}
