import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { isCI, locateTool, setupScriptOf, type ToolLookup, type ToolName } from '../../tools/lib/tools.ts';

/** Why `name` is unavailable: what its setup script said (SUMMA_MISSING_TOOLS, set by `npm test`), or where it is looked for. */
function unavailable(name: ToolName, env: NodeJS.ProcessEnv): string {
  let reasons: Record<string, string> = {};
  try {
    reasons = JSON.parse(env.SUMMA_MISSING_TOOLS ?? '{}') as Record<string, string>;
  } catch {
    // not set by `npm test`: say where the tool is looked for
  }
  return `${name} is unavailable: ${reasons[name] ?? `not found in the project's tools folder (${setupScriptOf(name) ?? 'tools/setup/'} installs it)`}`;
}

/**
 * For a test's `skip` option: the reason to skip a test that needs this tool, or false to run it.
 * Spec files declare the tools they need with it, and `npm test` runs those tools' setup scripts.
 * In CI nothing is skipped: a missing tool fails the test (see requireTool).
 */
export function missingTool(name: ToolName, lookup: ToolLookup = {}): string | false {
  const env = lookup.env ?? process.env;
  if (isCI(env) || locateTool(name, lookup)) return false;
  return unavailable(name, env);
}

/** The command to run for a tool; throws, saying why, when it is unavailable. */
export function requireTool(name: ToolName, lookup: ToolLookup = {}): string {
  const found = locateTool(name, lookup);
  if (found) return found;
  const env = lookup.env ?? process.env;
  throw new Error(`${unavailable(name, env)}${isCI(env) ? ' (in CI every test runs, so this one fails)' : ''}`);
}

/** Runs the pinned grpcurl with these arguments; resolves with its stdout, rejects with its stderr. */
export async function grpcurl(...args: string[]): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(requireTool('grpcurl'), ['-max-time', '10', ...args]);
    return stdout;
  } catch (error) {
    const failure = error as Error & { stderr?: string; code?: number };
    throw new Error(`grpcurl ${args.join(' ')} exited ${failure.code}: ${failure.stderr ?? failure.message}`);
  }
}
