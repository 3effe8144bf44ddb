import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildStatus, inputsHash, STAMP } from '../../tools/build/build-stamp.mjs';

describe('when npm start rebuilds dist/', () => {
  let root: string;
  const write = (file: string, text: string) => {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
  };
  const stamp = () => write(STAMP, `${inputsHash(root)}\n`);

  before(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'summa-build-stamp-'));
    write('tsconfig.json', '{}');
    write('tsconfig.build.json', '{ "extends": "./tsconfig.json" }');
    write('package-lock.json', '{}');
    write('src/calculator/main.ts', 'export {};\n');
    write('src/calculator/migrations/001_init.sql', 'CREATE TABLE t ();\n');
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('builds when dist/ is missing, or has no stamp (a build that stopped half-way)', () => {
    assert.deepEqual(buildStatus(root), { fresh: false, reason: 'dist/ is missing' });
    mkdirSync(path.join(root, 'dist'));
    assert.equal(buildStatus(root).fresh, false);
    assert.match(buildStatus(root).reason, /no build stamp/);
  });

  it('does not build when the stamp matches the sources, even if their modification times changed', () => {
    stamp();
    assert.equal(buildStatus(root).fresh, true);
    const later = new Date(Date.now() + 60_000);
    utimesSync(path.join(root, 'src/calculator/main.ts'), later, later);
    assert.equal(buildStatus(root).fresh, true, 'a checkout touches files without changing them');
  });

  for (const [change, file, text] of [
    ['a source edited', 'src/calculator/main.ts', 'export const x = 1;\n'],
    ['a source added', 'src/calculator/extra.ts', 'export {};\n'],
    ['a migration added', 'src/calculator/migrations/002_more.sql', 'SELECT 1;\n'],
    ['the build configuration changed', 'tsconfig.build.json', '{ "extends": "./tsconfig.json", "compilerOptions": {} }'],
    ['the dependencies changed (the compiler among them)', 'package-lock.json', '{ "lockfileVersion": 3 }'],
  ] as const) {
    it(`builds again after ${change}`, () => {
      stamp();
      write(file, text);
      assert.deepEqual(buildStatus(root), { fresh: false, reason: 'the sources changed since dist/ was built' });
      stamp();
      assert.equal(buildStatus(root).fresh, true);
    });
  }

  it('tells a renamed source from an unchanged tree', () => {
    stamp();
    const before = inputsHash(root);
    rmSync(path.join(root, 'src/calculator/extra.ts'));
    write('src/calculator/renamed.ts', 'export {};\n');
    assert.notEqual(inputsHash(root), before);
  });
});
