import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { toolPath } from '../../tools/lib/paths.ts';

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
