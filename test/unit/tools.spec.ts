import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { isCI, locateTool, runSetupScript, setupScriptsFor, toolReport, toolsDeclaredIn, toolOfSetupScript } from '../../tools/lib/tools.ts';
import { missingTool, requireTool } from '../support/tools.ts';

const scratch = mkdtempSync(path.join(os.tmpdir(), 'summa-tools-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A folder holding executable stand-ins named `names`. */
function binDir(name: string, ...names: string[]): string {
  const dir = path.join(scratch, name);
  mkdirSync(dir, { recursive: true });
  for (const command of names) {
    writeFileSync(path.join(dir, command), '#!/bin/sh\n');
    chmodSync(path.join(dir, command), 0o755);
  }
  return dir;
}

describe('finding a tool', () => {
  const project = binDir('project', 'prometheus', 'k6');
  const other = binDir('other', 'k6');
  const machine = binDir('machine', 'prometheus', 'docker-compose', 'grpcurl', 'openssl');
  writeFileSync(path.join(project, 'docker-compose'), 'not executable');

  it("takes the project's tools folders first, in order, then PATH", () => {
    const env = { PATH: machine };
    assert.equal(locateTool('prometheus', { env, projectDirs: [project] }), path.join(project, 'prometheus'));
    assert.equal(locateTool('k6', { env, projectDirs: [other, project] }), path.join(other, 'k6'));
    assert.equal(locateTool('openssl', { env, projectDirs: [project] }), path.join(machine, 'openssl'));
    assert.equal(locateTool('docker-compose', { env, projectDirs: [project] }), path.join(machine, 'docker-compose'), 'a file that is not executable is passed over');
  });

  it('never takes a pinned tool (grpcurl, k6) from PATH', () => {
    assert.equal(locateTool('grpcurl', { env: { PATH: machine }, projectDirs: [project] }), undefined);
    assert.equal(locateTool('k6', { env: { PATH: binDir('machine-k6', 'k6') }, projectDirs: [] }), undefined);
  });

  it('honours PROMETHEUS_BIN and K6_BIN, and finds nothing when they name no executable', () => {
    const env = { PATH: machine, PROMETHEUS_BIN: path.join(other, 'k6'), K6_BIN: path.join(other, 'none') };
    assert.equal(locateTool('prometheus', { env, projectDirs: [project] }), path.join(other, 'k6'));
    assert.equal(locateTool('k6', { env, projectDirs: [project] }), undefined);
  });
});

describe('a missing tool', () => {
  const empty = { env: { PATH: binDir('empty') }, projectDirs: [] };

  it('skips the tests that need it, with the reason the setup gave, outside CI', () => {
    const env = { ...empty.env, SUMMA_MISSING_TOOLS: JSON.stringify({ prometheus: 'no apt-get here' }) };
    assert.equal(missingTool('prometheus', { ...empty, env }), 'prometheus is unavailable: no apt-get here');
    assert.match(String(missingTool('grpcurl', empty)), /^grpcurl is unavailable: .*tools\/setup\/41-grpcurl\.sh/);
    assert.equal(missingTool('openssl', { env: { PATH: binDir('has-openssl', 'openssl') }, projectDirs: [] }), false);
  });

  it('is not skipped in CI: the test runs and fails, saying why', () => {
    for (const CI of ['true', '1']) {
      const env = { ...empty.env, CI, SUMMA_MISSING_TOOLS: JSON.stringify({ prometheus: 'no apt-get here' }) };
      assert.equal(isCI(env), true);
      assert.equal(missingTool('prometheus', { ...empty, env }), false);
      assert.throws(() => requireTool('prometheus', { ...empty, env }), /prometheus is unavailable: no apt-get here.*CI/);
    }
    assert.equal(isCI({ CI: 'false' }), false);
    assert.equal(isCI({}), false);
  });

  it('found, is its path', () => {
    assert.equal(requireTool('openssl', { env: { PATH: binDir('has-openssl', 'openssl') }, projectDirs: [] }), path.join(scratch, 'has-openssl', 'openssl'));
  });
});

describe('the setup report', () => {
  it('names the tool of each setup script', () => {
    assert.equal(toolOfSetupScript('20-prometheus.sh'), 'prometheus');
    assert.equal(toolOfSetupScript('tools/setup/21-docker-compose.sh'), 'docker-compose');
  });

  it('reads the tools a spec file declares', () => {
    // Spelt out of pieces, so that this file declares none of them itself.
    const declare = (args: string) => `${'missing'}Tool(${args})`;
    const source = `describe('x', { skip: ${declare("'prometheus'")} }, () => {
      it('y', { skip: ${declare('"docker-compose"')} }, () => {});
      it('z', { skip: ${declare(" 'openssl' ")} }, () => {});
    });`;
    assert.deepEqual(toolsDeclaredIn(source), ['docker-compose', 'openssl', 'prometheus']);
    assert.deepEqual(toolsDeclaredIn(`requireTool("k6"); ${declare("'grpcurl', { env }")}`), [], 'a call with a lookup of its own is no declaration');
  });

  it('takes no declaration from this file', async () => {
    assert.deepEqual(toolsDeclaredIn(await readFile(fileURLToPath(import.meta.url), 'utf8')), []);
  });

  const needs = new Map([
    ['test/e2e/dashboards.e2e.spec.ts', ['prometheus']],
    ['test/unit/security.spec.ts', ['openssl']],
    ['test/security/tls-and-token.int.spec.ts', ['openssl']],
  ]);
  const failed = [
    { tool: 'openssl', script: '50-openssl.sh', reason: 'openssl cannot be had: no apt-get' },
    { tool: 'grpcurl', script: '41-grpcurl.sh', reason: 'no Go' },
  ];

  it('runs a setup script, passing its output on, and keeps the last line it wrote on stderr as the reason it failed', async () => {
    const script = path.join(scratch, '60-failing.sh');
    writeFileSync(script, 'echo "working on it" >&2\necho out\necho "no can do: the tool is nowhere" >&2\necho >&2\nexit 3\n');
    let passedOn = '';
    const output = { write: (chunk: string | Buffer) => ((passedOn += chunk.toString()), true) };
    assert.deepEqual(await runSetupScript(script, { cwd: scratch, stdout: output, stderr: output }), {
      ok: false,
      reason: 'no can do: the tool is nowhere',
    });
    for (const line of ['working on it', 'out', 'no can do: the tool is nowhere']) assert.ok(passedOn.includes(`${line}\n`), passedOn);
    writeFileSync(script, 'exit 0\n');
    assert.deepEqual(await runSetupScript(script, { cwd: scratch, stdout: output, stderr: output }), { ok: true });
    writeFileSync(script, 'exit 1\n');
    assert.deepEqual(await runSetupScript(script, { cwd: scratch, stdout: output, stderr: output }), { ok: false, reason: '60-failing.sh exited 1' });
  });

  it('runs the setup scripts of the tools the selected spec files need, and those no spec file declares', () => {
    const scripts = ['20-prometheus.sh', '21-docker-compose.sh', '30-something.sh', '50-openssl.sh'];
    const all = new Map([...needs, ['test/deploy/compose.spec.ts', ['docker-compose']]]);
    assert.deepEqual(setupScriptsFor(scripts, all, ['test/unit/security.spec.ts']), ['30-something.sh', '50-openssl.sh']);
    assert.deepEqual(setupScriptsFor(scripts, all, [...all.keys()]), scripts);
  });

  it('outside CI, goes on and lists the tests that will be skipped, and why', () => {
    const report = toolReport(failed, needs, { ci: false });
    assert.equal(report.abort, false);
    assert.deepEqual(report.missing, { openssl: 'openssl cannot be had: no apt-get', grpcurl: 'no Go' });
    assert.deepEqual(report.lines, [
      'tools/setup/50-openssl.sh failed: openssl cannot be had: no apt-get',
      '  skipped, as they need openssl: test/security/tls-and-token.int.spec.ts, test/unit/security.spec.ts',
      'tools/setup/41-grpcurl.sh failed: no Go',
      '  no selected spec file needs grpcurl',
    ]);
  });

  it('in CI, stops the run', () => {
    const report = toolReport(failed, needs, { ci: true });
    assert.equal(report.abort, true);
    assert.ok(report.lines.includes('tools/setup/50-openssl.sh failed: openssl cannot be had: no apt-get'), report.lines.join('\n'));
    assert.match(report.lines.at(-1)!, /CI runs every test/);
  });

  it('says nothing when every tool is there', () => {
    assert.deepEqual(toolReport([], needs, { ci: true }), { abort: false, missing: {}, lines: [] });
  });
});
