import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root folder. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A command that tools/setup/ built into the project's tools dir (SUMMA_TOOLS_BIN overrides it). */
export function toolPath(name: string): string {
  return path.join(process.env.SUMMA_TOOLS_BIN ?? path.join(repoRoot, '.data', 'tools', 'bin'), name);
}
