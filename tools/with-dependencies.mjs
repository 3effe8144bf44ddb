#!/usr/bin/env node
// Runs a TypeScript entry point, installing the npm dependencies first when they are missing or
// older than the lockfile, so that `npm start` and `npm test` work on a fresh clone. With --build it
// also compiles src/ into dist/ when dist/ is missing or was built from other sources (`npm start`
// runs the compiled services).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const options = process.argv.slice(2);
const build = options[0] === '--build';
const [entry, ...args] = build ? options.slice(1) : options;
if (!entry) {
  console.error('usage: node tools/with-dependencies.mjs [--build] <entry.ts> [args...]');
  process.exit(2);
}

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19)) {
  console.error(`Summa needs Node.js 20.19 or newer; this is ${process.version}.`);
  process.exit(1);
}

const installed = path.join(root, 'node_modules', '.package-lock.json');
const lockfile = path.join(root, 'package-lock.json');
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lockfile).mtimeMs) {
  console.error('Installing npm dependencies (first run)…');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) {
    console.error('npm ci failed; see the output above.');
    process.exit(result.status ?? 1);
  }
}

if (build) {
  const { buildStatus } = await import('./build/build-stamp.mjs');
  if (!buildStatus(root).fresh) {
    const result = spawnSync(process.execPath, [path.join(root, 'tools/build/build.mjs'), '--if-stale'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
    if (result.status !== 0) process.exit(result.status ?? 1);
  }
}

// The child gets a process group of its own, so that Ctrl-C reaches only it (forwarded from here)
// and not the servers it starts, which it stops in order. The IPC channel tells it when this
// process is gone.
const child = spawn(process.execPath, ['--import', 'tsx', path.resolve(root, entry), ...args], {
  stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
  detached: true,
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? 128 + (constants.signals[signal] ?? 0)));
