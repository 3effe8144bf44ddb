// The setup scripts, run in a scratch copy of the project with the machine's own commands hidden
// from PATH: each unpacks its tool from Debian's packages into the copy's .data/tools, which needs
// no root and installs nothing on the machine; and when it cannot, it exits 1 and its last line
// says why (which `npm test` turns into the reason its tests are skipped).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { isCI } from '../../tools/lib/tools.ts';
import { repoRoot } from '../../tools/lib/paths.ts';

const scratch = mkdtempSync(path.join(os.tmpdir(), 'summa-setup-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const onPath = (command: string) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
const apt = onPath('apt-get') && onPath('dpkg-deb');

/** A PATH with every command of this one but `hidden`, and the commands of `extra` first. */
function pathWithout(hidden: string[], extra: string[] = []): string {
  const dir = mkdtempSync(path.join(scratch, 'path-'));
  for (const from of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    let entries: string[];
    try {
      entries = readdirSync(from);
    } catch {
      continue;
    }
    for (const name of entries) {
      if (hidden.includes(name) || existsSync(path.join(dir, name))) continue;
      symlinkSync(path.join(from, name), path.join(dir, name));
    }
  }
  return [...extra, dir].join(path.delimiter);
}

/** A fresh copy of the project's tools/setup, whose scripts install into its own .data/tools. */
function project(): string {
  const dir = mkdtempSync(path.join(scratch, 'project-'));
  cpSync(path.join(repoRoot, 'tools', 'setup'), path.join(dir, 'tools', 'setup'), { recursive: true });
  return dir;
}

function runSetup(dir: string, script: string, env: NodeJS.ProcessEnv) {
  const { SUMMA_TOOLS_BIN: _elsewhere, ...base } = process.env;
  const result = spawnSync('bash', [path.join(dir, 'tools', 'setup', script)], { cwd: dir, env: { ...base, ...env }, encoding: 'utf8' });
  const lastLine = result.stderr.trim().split('\n').at(-1) ?? '';
  return { status: result.status, stderr: result.stderr, lastLine };
}

/** Runs an unpacked tool; asserts it resolves into the project's .data/tools/debian/NAME. */
function unpacked(dir: string, name: string, ...args: string[]): string {
  const command = path.join(dir, '.data', 'tools', 'bin', name);
  const target = realpathSync(command);
  const debian = path.join(realpathSync(dir), '.data', 'tools', 'debian', name);
  assert.ok(target.startsWith(debian) || readFileSync(command, 'utf8').includes(`debian/${name}`), `${command} is not the unpacked ${name}`);
  assert.match(readFileSync(path.join(debian, 'packages.txt'), 'utf8'), new RegExp(`^${name}=\\S+$`, 'm'));
  const result = spawnSync(command, args, { encoding: 'utf8', env: { ...process.env, PATH: pathWithout([name]) } });
  assert.equal(result.status, 0, `${name} ${args.join(' ')}: ${result.stderr}`);
  return result.stdout + result.stderr;
}

const noApt = 'no apt-get and dpkg-deb here to fetch Debian packages with';

describe("tools from Debian's packages, unpacked without root", { skip: apt || isCI() ? false : noApt, timeout: 300_000 }, () => {
  it('prometheus', () => {
    const dir = project();
    const result = runSetup(dir, '20-prometheus.sh', { PATH: pathWithout(['prometheus']) });
    assert.equal(result.status, 0, result.stderr);
    assert.match(unpacked(dir, 'prometheus', '--version'), /^prometheus, version /);
  });

  it('docker-compose, with its Python packages', () => {
    const dir = project();
    const result = runSetup(dir, '21-docker-compose.sh', { PATH: pathWithout(['docker-compose']) });
    assert.equal(result.status, 0, result.stderr);
    assert.match(unpacked(dir, 'docker-compose', 'version'), /^docker-compose version /);
    writeFileSync(path.join(dir, 'compose.yml'), 'services:\n  one:\n    image: busybox\n    no_such_option: true\n');
    const check = spawnSync(path.join(dir, '.data', 'tools', 'bin', 'docker-compose'), ['-f', path.join(dir, 'compose.yml'), 'config', '-q'], { encoding: 'utf8' });
    assert.equal(check.status, 1);
    assert.match(check.stderr, /no_such_option/);
  });

  it('nginx, built with HTTP/2 and gRPC proxying', () => {
    const dir = project();
    const result = runSetup(dir, '30-nginx.sh', { PATH: pathWithout(['nginx']) });
    assert.equal(result.status, 0, result.stderr);
    const built = unpacked(dir, 'nginx', '-V');
    assert.match(built, /--with-http_v2_module/);
    assert.doesNotMatch(built, /--without-http_grpc_module/);
  });

  it('openssl, with its library, from package lists of its own when the machine has none', () => {
    const dir = project();
    // apt as on a machine where `apt-get update` never ran.
    const empty = path.join(scratch, 'no-apt-lists');
    mkdirSync(path.join(empty, 'lists', 'partial'), { recursive: true });
    mkdirSync(path.join(empty, 'cache', 'archives', 'partial'), { recursive: true });
    writeFileSync(path.join(empty, 'apt.conf'), `Dir::State::Lists "${empty}/lists";\nDir::Cache "${empty}/cache";\n`);
    const APT_CONFIG = path.join(empty, 'apt.conf');
    const download = spawnSync('apt-get', ['download', 'openssl'], { cwd: mkdtempSync(path.join(scratch, 'download-')), env: { ...process.env, APT_CONFIG } });
    assert.notEqual(download.status, 0, 'apt has no package lists');

    const result = runSetup(dir, '50-openssl.sh', { PATH: pathWithout(['openssl']), APT_CONFIG });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /fetching Debian's package lists into .*\.data\/tools\/debian\/apt/);
    assert.match(unpacked(dir, 'openssl', 'version'), /^OpenSSL /);
    const key = path.join(dir, 'key.pem');
    unpacked(dir, 'openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', path.join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost');
    assert.match(readFileSync(path.join(dir, 'cert.pem'), 'utf8'), /BEGIN CERTIFICATE/);
  });
});

describe('a tool that cannot be had', () => {
  it("without apt, the machine's own command is used", () => {
    const fake = path.join(scratch, 'machine-prometheus');
    mkdirSync(fake, { recursive: true });
    writeFileSync(path.join(fake, 'prometheus'), '#!/bin/sh\necho "prometheus, version 0.0.0"\n');
    chmodSync(path.join(fake, 'prometheus'), 0o755);
    const dir = project();
    const result = runSetup(dir, '20-prometheus.sh', { PATH: pathWithout(['prometheus', 'apt-get', 'dpkg-deb'], [fake]) });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.lastLine, `prometheus: using ${path.join(fake, 'prometheus')}`);
    assert.equal(existsSync(path.join(dir, '.data', 'tools', 'bin', 'prometheus')), false);
  });

  it('without apt nor the command, fails saying why', () => {
    for (const [script, tool] of [['20-prometheus.sh', 'prometheus'], ['21-docker-compose.sh', 'docker-compose'], ['50-openssl.sh', 'openssl']] as const) {
      const result = runSetup(project(), script, { PATH: pathWithout([tool, 'apt-get', 'dpkg-deb']) });
      assert.equal(result.status, 1, result.stderr);
      assert.equal(
        result.lastLine,
        `${tool} cannot be had: there is no apt-get and dpkg-deb to fetch Debian's packages with, and there is no usable ${tool} on PATH`,
      );
    }
  });

  it('chromium, with the libraries it lacks, runs headless and renders a page', () => {
    const dir = project();
    const result = runSetup(dir, '60-chromium.sh', { PATH: pathWithout(['chromium']) });
    assert.equal(result.status, 0, result.stderr);
    assert.match(unpacked(dir, 'chromium', '--headless', '--no-sandbox', '--version'), /^Chromium \d+/);
    const page = 'data:text/html,<p id=x>summa</p><script>document.getElementById("x").textContent += " rendered"</script>';
    const profile = mkdtempSync(path.join(scratch, 'chromium-profile-'));
    const dom = unpacked(dir, 'chromium', '--headless', '--no-sandbox', `--user-data-dir=${profile}`, '--dump-dom', page);
    assert.match(dom, /<p id="x">summa rendered<\/p>/);
  });

  it('nginx: a machine nginx that cannot proxy gRPC is not taken', () => {
    const fake = path.join(scratch, 'machine-nginx');
    mkdirSync(fake, { recursive: true });
    writeFileSync(path.join(fake, 'nginx'), '#!/bin/sh\necho "configure arguments: --without-http_grpc_module --with-http_v2_module" >&2\n');
    chmodSync(path.join(fake, 'nginx'), 0o755);
    const result = runSetup(project(), '30-nginx.sh', { PATH: pathWithout(['nginx', 'apt-get', 'dpkg-deb'], [fake]) });
    assert.equal(result.status, 1, result.stderr);
    assert.equal(
      result.lastLine,
      "nginx cannot be had: there is no apt-get and dpkg-deb to fetch Debian's packages with, and there is no nginx with HTTP/2 and gRPC proxying on PATH",
    );
  });

  it('a Go tool that cannot be built fails saying why', () => {
    const dir = project();
    // No module proxy, as without a network (or without Go, which says so the same way).
    const result = runSetup(dir, '41-grpcurl.sh', { GOPROXY: 'off', GOMODCACHE: path.join(scratch, 'gomodcache') });
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.lastLine, /^grpcurl cannot be built: (go install github\.com\/fullstorydev\/grpcurl\/cmd\/grpcurl@v\S+ failed|there is no Go)/);
    assert.equal(existsSync(path.join(dir, '.data', 'tools', 'bin', 'grpcurl')), false);
  });
});
