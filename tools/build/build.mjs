#!/usr/bin/env node
// `npm run build`: compiles src/ into dist/ with tsc (tsconfig.build.json) and copies the files the
// services read at run time beside their modules (the SQL migrations), so that `node dist/<service>/main.js`
// runs with no TypeScript loader. With --if-stale it does nothing when dist/ is already up to date.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildStatus, DIST, inputsHash, STAMP } from './build-stamp.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ifStale = process.argv.includes('--if-stale');
// Two `npm start`s (or a test run beside one) may find dist/ stale at once: one builds, the other
// waits for it and then finds dist/ fresh.
const lock = path.join(root, `${DIST}.lock`);
const LOCK_WAIT_MS = 300_000;

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

async function acquireLock() {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(path.join(lock, 'pid'), String(process.pid));
      return;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    let holder = NaN;
    try {
      holder = Number(readFileSync(path.join(lock, 'pid'), 'utf8'));
    } catch {
      // Its holder is between mkdir and writing its pid.
    }
    if (Number.isInteger(holder) && holder > 0 && !alive(holder)) {
      rmSync(lock, { recursive: true, force: true }); // left by a build that was killed
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another build has held ${lock} for ${LOCK_WAIT_MS / 1000}s; remove it if no build is running`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function build() {
  const status = buildStatus(root);
  if (ifStale && status.fresh) return 0;
  console.error(`Compiling src/ into ${DIST}/ (${ifStale ? status.reason : 'npm run build'})…`);
  // Hashed before compiling, so that a source saved during the build makes the next check rebuild.
  const hash = inputsHash(root);
  rmSync(path.join(root, DIST), { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) {
    console.error('The build failed; see the compiler output above.');
    return result.status ?? 1;
  }
  for (const entry of readdirSync(path.join(root, 'src'), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.name.endsWith('.ts')) continue;
    const relative = path.relative(path.join(root, 'src'), path.join(entry.parentPath, entry.name));
    cpSync(path.join(root, 'src', relative), path.join(root, DIST, relative));
  }
  writeFileSync(path.join(root, STAMP), `${hash}\n`);
  return 0;
}

await acquireLock();
let code;
try {
  code = build();
} finally {
  rmSync(lock, { recursive: true, force: true });
}
process.exit(code);
