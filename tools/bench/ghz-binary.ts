import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { repoRoot, toolPath } from '../lib/paths.ts';

export class GhzUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GhzUnavailableError';
  }
}

/**
 * The pinned ghz binary, built by tools/setup/42-ghz.sh on first use (a few minutes; then
 * instant, and again when the pin changes). GHZ_BIN points at another ghz instead.
 */
export function ensureGhz(): string {
  const override = process.env.GHZ_BIN;
  if (override) {
    if (!existsSync(override)) throw new GhzUnavailableError(`GHZ_BIN is ${override}, which does not exist`);
    return override;
  }
  const setup = spawnSync('bash', [path.join(repoRoot, 'tools', 'setup', '42-ghz.sh')], {
    cwd: repoRoot,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (setup.status !== 0) throw new GhzUnavailableError('tools/setup/42-ghz.sh could not install ghz; see the output above');
  return toolPath('ghz');
}
