#!/usr/bin/env node
// The `summa` command: the compiled CLI (dist/, from `npm run build`) when it is up to date with
// the sources, else the TypeScript CLI through tsx, so that a checkout never runs a stale build.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function compiledIsCurrent() {
  // Without the sources (an install of the built package) there is nothing to be stale against.
  if (!existsSync(path.join(root, 'src/cli/main.ts'))) return true;
  const { buildStatus } = await import('../tools/build/build-stamp.mjs');
  return buildStatus(root).fresh;
}

if (await compiledIsCurrent()) {
  await import('../dist/cli/main.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
