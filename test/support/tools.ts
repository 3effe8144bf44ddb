import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A command that scripts/setup/ built into the project's tools dir (SUMMA_TOOLS_BIN overrides it). */
export function toolPath(name: string): string {
  return path.join(process.env.SUMMA_TOOLS_BIN ?? path.join(root, '.data', 'tools', 'bin'), name);
}

/** Runs the pinned grpcurl with these arguments; resolves with its stdout, rejects with its stderr. */
export async function grpcurl(...args: string[]): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(toolPath('grpcurl'), ['-max-time', '10', ...args]);
    return stdout;
  } catch (error) {
    const failure = error as Error & { stderr?: string; code?: number };
    throw new Error(`grpcurl ${args.join(' ')} exited ${failure.code}: ${failure.stderr ?? failure.message}`);
  }
}
