// The embedded PostgreSQL of `npm start` and `npm test` for a user who is not root: it runs as that
// user (as root it runs as "postgres"). Run as root, this test drops to "nobody" to check it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { repoRoot } from '../../tools/lib/paths.ts';

const module = (file: string) => JSON.stringify(pathToFileURL(path.join(repoRoot, file)).href);

/** Starts a server in DATA_DIR, checks who runs it and that it answers, stops it; prints what it saw. */
const script = `
import { readFileSync } from 'node:fs';
import pg from 'pg';
const { startPostgresServer } = await import(${module('tools/local-stack/postgres-server.ts')});
const { freePort } = await import(${module('tools/lib/free-port.ts')});
const server = await startPostgresServer({ dataDir: process.env.DATA_DIR, port: await freePort() });
try {
  const status = readFileSync('/proc/' + (await server.pid()) + '/status', 'utf8');
  const client = new pg.Client({ connectionString: server.url('postgres') });
  await client.connect();
  const { rows } = await client.query('select 1 + 1 as two');
  await client.end();
  console.log(JSON.stringify({ self: process.getuid(), server: Number(/^Uid:\\s+(\\d+)/m.exec(status)[1]), two: rows[0].two }));
} finally {
  await server.stop();
}
`;

describe('the embedded PostgreSQL for a user who is not root', { timeout: 120_000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'summa-pg-user-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it('runs as that user', () => {
    const root = process.getuid?.() === 0;
    const nobody = 65534;
    if (root) chownSync(dataDir, nobody, nobody);
    const node = [process.execPath, '--import', 'tsx', '--input-type=module', '-e', script];
    const [command, ...args] = root ? ['setpriv', `--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', ...node] : node;
    const result = spawnSync(command!, args, {
      cwd: repoRoot,
      encoding: 'utf8',
      env: { ...process.env, DATA_DIR: path.join(dataDir, 'pg'), HOME: dataDir },
      timeout: 100_000,
    });
    assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
    const seen = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { self: number; server: number; two: number };
    assert.notEqual(seen.self, 0);
    assert.deepEqual(seen, { self: seen.self, server: seen.self, two: 2 });
    if (root) assert.equal(seen.self, nobody);
  });
});
