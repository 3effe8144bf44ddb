import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { repoRoot } from '../../tools/lib/paths.ts';

// Records every module a fresh node loads while importing `modules` (nothing is started: these
// export functions only), through a loader hook registered before the imports.
function modulesLoadedBy(modules: string[]): string[] {
  const hook = `export async function load(url, context, next) { if (url.includes('/node_modules/')) process.stderr.write('LOADED ' + url + '\\n'); return next(url, context); }`;
  const script = [
    `import { register } from 'node:module';`,
    `register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));`,
    ...modules.map((module) => `await import(${JSON.stringify(new URL(module, `file://${repoRoot}/`).href)});`),
  ].join('\n');
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
  assert.equal(child.status, 0, child.stderr);
  return child.stderr.split('\n').filter((line) => line.startsWith('LOADED ')).map((line) => line.slice('LOADED '.length));
}

describe("the calculator's modules", () => {
  // The Kafka client is about 200 modules and 20–40 MB of a process's memory; the calculator never
  // talks to Kafka (the relay publishes its outbox), so it must not load the client at all.
  it('do not load the Kafka client or the OpenTelemetry SDK', () => {
    const loaded = modulesLoadedBy(['src/calculator/config.ts', 'src/calculator/calculator-service.ts', 'src/platform/service/service-main.ts']);
    assert.ok(loaded.some((url) => url.includes('/node_modules/@opentelemetry/api/')), 'the hook saw the packages loaded');
    assert.deepEqual(loaded.filter((url) => url.includes('/node_modules/@platformatic/kafka/')), []);
    assert.deepEqual(loaded.filter((url) => url.includes('/node_modules/@opentelemetry/sdk-')), []);
  });
});
