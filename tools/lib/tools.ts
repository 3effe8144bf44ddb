// The machine-level tools that tools/setup/ provides (beyond npm packages): where each is found,
// and what `npm test` does when one cannot be had.
import { spawn } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './paths.ts';

interface ToolSpec {
  /** Whether the machine's own command on PATH will do (a pinned version will not). */
  onPath: boolean;
  /** An environment variable that names the command to use instead. */
  override?: string;
}

export const TOOLS = {
  prometheus: { onPath: true, override: 'PROMETHEUS_BIN' },
  'docker-compose': { onPath: true },
  k6: { onPath: false, override: 'K6_BIN' },
  grpcurl: { onPath: false },
  ghz: { onPath: false, override: 'GHZ_BIN' },
  vegeta: { onPath: false, override: 'VEGETA_BIN' },
  openssl: { onPath: true },
  // The machine's nginx will do when it can proxy gRPC; tools/setup/30-nginx.sh checks that.
  nginx: { onPath: true, override: 'NGINX_BIN' },
  // The console's browser test drives it with playwright-core; any recent Chromium will do.
  chromium: { onPath: true, override: 'CHROMIUM_BIN' },
} satisfies Record<string, ToolSpec>;

export type ToolName = keyof typeof TOOLS;

export interface ToolLookup {
  env?: NodeJS.ProcessEnv;
  /** The project's tools folders, searched in order (default: projectToolDirs(env)). */
  projectDirs?: string[];
}

export const setupDir = path.join(repoRoot, 'tools', 'setup');

/** SUMMA_TOOLS_BIN when set (tools built elsewhere), then the project's own .data/tools/bin. */
export function projectToolDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const own = path.join(repoRoot, '.data', 'tools', 'bin');
  return [...new Set([env.SUMMA_TOOLS_BIN ? path.resolve(env.SUMMA_TOOLS_BIN) : own, own])];
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The command to run for a tool: its override variable if set, else the first executable one in
 * the project's tools folders, else (where any version will do) on PATH; undefined if none.
 */
export function locateTool(name: ToolName, { env = process.env, projectDirs = projectToolDirs(env) }: ToolLookup = {}): string | undefined {
  const spec: ToolSpec = TOOLS[name];
  if (spec.override && env[spec.override]) {
    const chosen = path.resolve(env[spec.override]!);
    return executable(chosen) ? chosen : undefined;
  }
  const pathDirs = spec.onPath ? (env.PATH ?? '').split(path.delimiter).filter(Boolean) : [];
  return [...projectDirs, ...pathDirs].map((dir) => path.join(dir, name)).find(executable);
}

/** CI runs every test: there, a missing tool fails the tests that need it rather than skip them. */
export function isCI(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.CI) && env.CI !== 'false' && env.CI !== '0';
}

/** The tool a setup script provides: tools/setup/NN-NAME.sh provides NAME. */
export function toolOfSetupScript(script: string): string {
  return path.basename(script, '.sh').replace(/^\d+-/, '');
}

/** The setup script that provides a tool. */
export function setupScriptOf(tool: string): string | undefined {
  const script = readdirSync(setupDir).find((file) => file.endsWith('.sh') && toolOfSetupScript(file) === tool);
  return script && path.join('tools', 'setup', script);
}

/** The tools a spec file says it needs, by `missingTool('NAME')` (test/support/tools.ts; a call with more arguments does not count), sorted. */
export function toolsDeclaredIn(source: string): string[] {
  const names = [...source.matchAll(/\bmissingTool\(\s*(['"])([\w-]+)\1\s*\)/g)].map((match) => match[2]!);
  return [...new Set(names)].sort();
}

/**
 * The setup scripts to run for `selected` spec files: those of the tools they need, and any whose
 * tool no spec file declares (its use is not known, so it always runs). `needs` maps every spec
 * file to the tools it declares.
 */
export function setupScriptsFor(scripts: string[], needs: Map<string, string[]>, selected: string[]): string[] {
  const declared = new Set([...needs.values()].flat());
  const wanted = new Set(selected.flatMap((file) => needs.get(file) ?? []));
  return scripts.filter((script) => {
    const tool = toolOfSetupScript(script);
    return wanted.has(tool) || !declared.has(tool);
  });
}

/** Where a setup script's output goes. */
interface Sink {
  write(chunk: string | Buffer): unknown;
}

/**
 * Runs one setup script, passing its output on as it comes; when it fails, the reason is the last
 * line it wrote on stderr.
 */
export function runSetupScript(
  script: string,
  { cwd = repoRoot, stdout = process.stdout, stderr = process.stderr }: { cwd?: string; stdout?: Sink; stderr?: Sink } = {},
): Promise<{ ok: true } | { ok: false; reason: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [script], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    child.stdout.on('data', (chunk: Buffer) => stdout.write(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr.write(chunk);
      tail = (tail + chunk.toString()).slice(-4096);
    });
    const done = (code: number | null, signal: NodeJS.Signals | null) => {
      if (code === 0) return resolve({ ok: true });
      const last = tail.split('\n').map((line) => line.trim()).filter(Boolean).at(-1);
      resolve({ ok: false, reason: last ?? `${path.basename(script)} exited ${code ?? signal}` });
    };
    child.on('error', (error) => resolve({ ok: false, reason: `cannot run ${path.basename(script)}: ${error.message}` }));
    child.on('close', done);
  });
}

/**
 * A tool, first provided by its setup script when it is not there yet; undefined when it cannot be
 * had (the script said why). An override variable is taken as it is.
 */
export async function ensureTool(name: ToolName): Promise<string | undefined> {
  const found = locateTool(name);
  const spec: ToolSpec = TOOLS[name];
  if (found || (spec.override && process.env[spec.override])) return found;
  const script = setupScriptOf(name);
  if (script) await runSetupScript(path.join(repoRoot, script));
  return locateTool(name);
}

/**
 * A pinned tool (k6, ghz, vegeta): its setup script runs every time, which is instant when the
 * pinned version is there and builds it (a few minutes) when it is not or the pin changed, unless
 * the override variable names another command. Throws with the reason when it cannot be had.
 */
export async function pinnedTool(name: ToolName): Promise<string> {
  const spec: ToolSpec = TOOLS[name];
  const override = spec.override ? process.env[spec.override] : undefined;
  const script = setupScriptOf(name);
  if (!override && script) {
    const setup = await runSetupScript(path.join(repoRoot, script), { stdout: process.stderr });
    if (!setup.ok) throw new Error(`${script} could not install ${name}: ${setup.reason}`);
  }
  const command = locateTool(name);
  if (!command) {
    throw new Error(override ? `${spec.override} is ${override}, which is not an executable file` : `${name} is not in ${projectToolDirs().join(' or ')}`);
  }
  return command;
}

export interface SetupFailure {
  tool: string;
  script: string;
  /** Why, in a line (the script's last line on stderr). */
  reason: string;
}

export interface ToolReport {
  /** Whether the test run stops (in CI, where every tool must be there). */
  abort: boolean;
  /** Tool → reason, for the tests that skip (SUMMA_MISSING_TOOLS). */
  missing: Record<string, string>;
  /** What to print. */
  lines: string[];
}

/** What `npm test` does about setup scripts that failed: skip the tests that need them, or in CI stop. */
export function toolReport(failures: SetupFailure[], needs: Map<string, string[]>, { ci }: { ci: boolean }): ToolReport {
  const lines: string[] = [];
  const missing: Record<string, string> = {};
  for (const { tool, script, reason } of failures) {
    missing[tool] = reason;
    lines.push(`tools/setup/${path.basename(script)} failed: ${reason}`);
    if (ci) continue;
    const skipped = [...needs].filter(([, tools]) => tools.includes(tool)).map(([file]) => file).sort();
    lines.push(skipped.length > 0 ? `  skipped, as they need ${tool}: ${skipped.join(', ')}` : `  no selected spec file needs ${tool}`);
  }
  if (ci && failures.length > 0) lines.push('CI runs every test, so every tool must be there: stopping.');
  return { abort: ci && failures.length > 0, missing, lines };
}
