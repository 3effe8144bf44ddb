// Whether dist/ was compiled from the sources as they are now. Plain JavaScript, because it runs
// before anything can load TypeScript: from tools/with-dependencies.mjs and bin/summa.mjs.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/** Where the compiled services go, relative to the project. */
export const DIST = 'dist';
/** Written last by a successful build: the hash of the inputs it compiled. */
export const STAMP = path.join(DIST, '.build-stamp');
// Everything the output depends on besides the compiler itself (pinned in the lockfile).
const INPUT_FILES = ['tsconfig.json', 'tsconfig.build.json', 'package-lock.json', 'tools/build/build.mjs'];
const INPUT_FOLDERS = ['src'];

/**
 * A hash of the build's inputs: their paths and contents, not their modification times, which a
 * checkout or a copy changes without changing what would be compiled.
 */
export function inputsHash(root) {
  const hash = createHash('sha256');
  const files = [...INPUT_FILES.filter((file) => existsSync(path.join(root, file)))];
  for (const folder of INPUT_FOLDERS) {
    if (!existsSync(path.join(root, folder))) continue;
    for (const entry of readdirSync(path.join(root, folder), { recursive: true })) {
      const relative = path.join(folder, String(entry));
      if (statSync(path.join(root, relative)).isFile()) files.push(relative);
    }
  }
  for (const file of files.sort()) {
    hash.update(`${file.split(path.sep).join('/')}\0`);
    hash.update(readFileSync(path.join(root, file)));
    hash.update('\0');
  }
  return hash.digest('hex');
}

/** Whether `root`'s dist/ is up to date, and if not, why (for the message that announces a build). */
export function buildStatus(root) {
  if (!existsSync(path.join(root, DIST))) return { fresh: false, reason: 'dist/ is missing' };
  const stamp = path.join(root, STAMP);
  if (!existsSync(stamp)) return { fresh: false, reason: 'dist/ is incomplete (no build stamp)' };
  if (readFileSync(stamp, 'utf8').trim() !== inputsHash(root)) return { fresh: false, reason: 'the sources changed since dist/ was built' };
  return { fresh: true, reason: 'dist/ is up to date' };
}
