import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/platform/config.ts';
import { envKafkaConfig } from '../../src/platform/service/service-config.ts';
import { readRelayConfig } from '../../src/relay/config.ts';

const env = { DATABASE_URL: 'postgres://summa@127.0.0.1:55432/summa' };

describe('the publish timeout (KAFKA_PUBLISH_TIMEOUT_MS)', () => {
  it('is 20 s for the relay and the totals service unless configured', () => {
    assert.equal(envKafkaConfig({}).publishTimeoutMs, 20_000);
    assert.equal(readRelayConfig(env).publishTimeoutMs, 20_000);
    assert.equal(envKafkaConfig({ KAFKA_PUBLISH_TIMEOUT_MS: '5000' }).publishTimeoutMs, 5_000);
    assert.equal(readRelayConfig({ ...env, KAFKA_PUBLISH_TIMEOUT_MS: '5000' }).publishTimeoutMs, 5_000);
  });

  it('is, unset, two thirds of a shorter relay lease, so that a failed publish releases its events while the relay holds them', () => {
    assert.equal(readRelayConfig({ ...env, RELAY_LEASE_MS: '3000' }).publishTimeoutMs, 2_000);
  });

  it('must end before the relay lease, naming both variables', () => {
    assert.throws(
      () => readRelayConfig({ ...env, RELAY_LEASE_MS: '10000', KAFKA_PUBLISH_TIMEOUT_MS: '10000' }),
      (error: unknown) => error instanceof ConfigError && /KAFKA_PUBLISH_TIMEOUT_MS/.test(error.message) && /RELAY_LEASE_MS/.test(error.message),
    );
  });

  it('refuses values below a second, naming the variable', () => {
    for (const value of ['999', 'soon', '-1']) {
      assert.throws(() => envKafkaConfig({ KAFKA_PUBLISH_TIMEOUT_MS: value }), (error: unknown) => error instanceof ConfigError && error.message.startsWith('KAFKA_PUBLISH_TIMEOUT_MS'));
    }
  });
});
