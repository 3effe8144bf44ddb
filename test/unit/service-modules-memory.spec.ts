import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { repoRoot } from '../../tools/lib/paths.ts';

// Whether a fresh node that imports `modules` (they export functions only: nothing starts) has
// loaded Node's own fetch implementation, undici, which Node loads on the first touch of a fetch
// global (`fetch`, `Response`, `Headers`…).
function loadsUndici(modules: string[]): boolean {
  const script = [
    ...modules.map((module) => `await import(${JSON.stringify(new URL(module, `file://${repoRoot}/`).href)});`),
    `process.stdout.write(JSON.stringify(process.moduleLoadList.some((name) => name.includes('internal/deps/undici/undici'))));`,
  ].join('\n');
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
  assert.equal(child.status, 0, child.stderr);
  return JSON.parse(child.stdout) as boolean;
}

describe("the services' modules", () => {
  it('the check sees undici when something touches Response', () => {
    assert.equal(loadsUndici(['src/platform/service/service-main.ts', 'data:text/javascript,void Response']), true);
  });

  // 12–13 MB of resident memory per service (BENCHMARKS.md, "Memory at rest"): pg's Cloudflare
  // check used to build a Response at import (src/platform/db/pg.ts).
  for (const service of ['calculator', 'relay', 'totals']) {
    it(`${service}: do not load Node's fetch (undici)`, () => {
      assert.equal(loadsUndici([`src/${service}/config.ts`, `src/${service}/${service}-service.ts`, 'src/platform/service/service-main.ts']), false);
    });
  }
});
