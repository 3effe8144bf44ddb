import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { repoRoot, toolPath } from '../lib/paths.ts';

export class K6UnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'K6UnavailableError';
  }
}

/**
 * The pinned k6 binary, built by tools/setup/40-k6.sh on first use (a few minutes; then
 * instant). K6_BIN points at another k6 instead.
 */
export function ensureK6(): string {
  const override = process.env.K6_BIN;
  if (override) {
    if (!existsSync(override)) throw new K6UnavailableError(`K6_BIN is ${override}, which does not exist`);
    return override;
  }
  const setup = spawnSync('bash', [path.join(repoRoot, 'tools', 'setup', '40-k6.sh')], {
    cwd: repoRoot,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (setup.status !== 0) throw new K6UnavailableError('tools/setup/40-k6.sh could not install k6; see the output above');
  return toolPath('k6');
}

