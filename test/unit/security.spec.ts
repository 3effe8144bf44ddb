import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readCalculatorConfig } from '../../src/calculator/config.ts';
import { bearerTokenMatches, envTlsIdentity, envWriteToken } from '../../src/platform/security.ts';
import { createSelfSignedCertificate } from '../support/tls.ts';
import { missingTool } from '../support/tools.ts';

describe('the write token', () => {
  const token = 'a-long-enough-secret-123';

  it('matches only "Bearer <token>" with exactly that token', () => {
    assert.equal(bearerTokenMatches(`Bearer ${token}`, token), true);
    assert.equal(bearerTokenMatches(`bearer ${token}`, token), true);
    for (const header of [undefined, '', token, `Bearer ${token}x`, `Bearer ${token.slice(1)}`, `Basic ${token}`, `Bearer ${token} extra`, 'Bearer ', ['Bearer', token]]) {
      assert.equal(bearerTokenMatches(header, token), false, String(header));
    }
  });

  it('is optional, and refused when too short, with a message that names the variable but not the value', () => {
    assert.equal(envWriteToken({}), undefined);
    assert.equal(envWriteToken({ SUMMA_WRITE_TOKEN: `  ${token} ` }), token);
    assert.throws(() => envWriteToken({ SUMMA_WRITE_TOKEN: 'short-secret' }), (error: Error) => {
      assert.equal(error.name, 'ConfigError');
      assert.match(error.message, /SUMMA_WRITE_TOKEN/);
      assert.doesNotMatch(error.message, /short-secret/);
      return true;
    });
    assert.throws(() => envWriteToken({ SUMMA_WRITE_TOKEN: 'has a space in the middle' }), /SUMMA_WRITE_TOKEN/);
  });
});

describe('the TLS settings', () => {
  it('are off without files, on with both, and a configuration error with one or an unreadable one', { skip: missingTool('openssl') }, () => {
    const certificate = createSelfSignedCertificate();
    try {
      assert.equal(envTlsIdentity({}), undefined);
      const identity = envTlsIdentity({ TLS_CERT_FILE: certificate.certFile, TLS_KEY_FILE: certificate.keyFile });
      assert.ok(identity?.cert.toString().includes('BEGIN CERTIFICATE'));
      assert.ok(identity?.key.toString().includes('PRIVATE KEY'));
      assert.throws(() => envTlsIdentity({ TLS_CERT_FILE: certificate.certFile }), /TLS_KEY_FILE/);
      assert.throws(() => envTlsIdentity({ TLS_KEY_FILE: certificate.keyFile }), /TLS_CERT_FILE/);
      assert.throws(() => envTlsIdentity({ TLS_CERT_FILE: '/nonexistent.pem', TLS_KEY_FILE: certificate.keyFile }), /TLS_CERT_FILE.*cannot read/);
      assert.throws(() => envTlsIdentity({ TLS_CERT_FILE: certificate.keyFile, TLS_KEY_FILE: certificate.keyFile }), /TLS_CERT_FILE.*CERTIFICATE/);
      const config = readCalculatorConfig({ TLS_CERT_FILE: certificate.certFile, TLS_KEY_FILE: certificate.keyFile, SUMMA_WRITE_TOKEN: 'x'.repeat(20) });
      assert.ok(config.tls);
      assert.equal(config.writeToken, 'x'.repeat(20));
    } finally {
      certificate.remove();
    }
  });

  it('leave the shutdown delay off by default and read it from SHUTDOWN_DELAY_MS', () => {
    assert.equal(readCalculatorConfig({}).shutdown.delayMs, 0);
    const config = readCalculatorConfig({ SHUTDOWN_DELAY_MS: '5000', SHUTDOWN_TIMEOUT_MS: '2000' });
    assert.equal(config.shutdown.delayMs, 5000);
    assert.ok(config.shutdown.timeoutMs > 5000, 'the timeout leaves room for the delay');
    assert.throws(() => readCalculatorConfig({ SHUTDOWN_DELAY_MS: 'soon' }), /SHUTDOWN_DELAY_MS/);
  });
});
