import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../../src/platform/config.ts';
import { baseClientOptions, envKafkaSecurity, kafkaSecurityEnv } from '../../src/platform/kafka/settings.ts';
import { envKafkaConfig, kafkaSettingsOf } from '../../src/platform/service/service-config.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'summa-kafka-settings-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string) => {
  const where = path.join(dir, name);
  writeFileSync(where, content);
  return where;
};
const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

/** Asserts that reading `env` fails with a ConfigError whose message starts by naming `variable`. */
function refuses(env: Record<string, string>, variable: string, detail?: RegExp) {
  assert.throws(
    () => envKafkaSecurity(env),
    (error: unknown) => error instanceof ConfigError && error.message.startsWith(variable) && (!detail || detail.test(error.message)),
    `expected a ConfigError naming ${variable} for ${JSON.stringify(env)}`,
  );
}

describe('the Kafka security settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_TLS_CA_FILE)', () => {
  it('is PLAINTEXT without TLS or SASL when nothing is set, and the client options stay as they were', () => {
    const security = envKafkaSecurity({});
    assert.deepEqual({ ...security }, { protocol: 'PLAINTEXT', ca: undefined });
    const options = baseClientOptions({ brokers: ['127.0.0.1:9092'], clientId: 'c', security });
    assert.equal('tls' in options, false);
    assert.equal('sasl' in options, false);
  });

  it('reads SASL_SSL with SCRAM-SHA-512 by default, the password from a file without its final newline, and the CA', () => {
    const security = envKafkaSecurity({
      KAFKA_SECURITY_PROTOCOL: 'sasl_ssl',
      KAFKA_SASL_USERNAME: 'summa-relay',
      KAFKA_SASL_PASSWORD_FILE: file('password', 'se cret\n'),
      KAFKA_TLS_CA_FILE: file('ca.pem', CA_PEM),
    });
    assert.equal(security.protocol, 'SASL_SSL');
    assert.deepEqual(security.sasl, { mechanism: 'SCRAM-SHA-512', username: 'summa-relay', password: 'se cret' });
    assert.equal(security.ca?.toString(), CA_PEM);
    const options = baseClientOptions({ brokers: ['127.0.0.1:9092'], clientId: 'c', security });
    assert.deepEqual(options.tls, { ca: security.ca });
    assert.deepEqual(options.sasl, { mechanism: 'SCRAM-SHA-512', username: 'summa-relay', password: 'se cret' });
  });

  it('takes the password from KAFKA_SASL_PASSWORD and other mechanisms; TLS without a CA trusts the default CAs', () => {
    const security = envKafkaSecurity({
      KAFKA_SECURITY_PROTOCOL: 'SASL_SSL',
      KAFKA_SASL_MECHANISM: 'scram-sha-256',
      KAFKA_SASL_USERNAME: 'u',
      KAFKA_SASL_PASSWORD: 'p',
    });
    assert.deepEqual(security.sasl, { mechanism: 'SCRAM-SHA-256', username: 'u', password: 'p' });
    assert.deepEqual(baseClientOptions({ brokers: ['b:1'], clientId: 'c', security }).tls, {});
    assert.deepEqual({ ...envKafkaSecurity({ KAFKA_SECURITY_PROTOCOL: 'SSL' }) }, { protocol: 'SSL', ca: undefined });
  });

  it('refuses unknown protocols and mechanisms, naming the variable', () => {
    refuses({ KAFKA_SECURITY_PROTOCOL: 'TLS' }, 'KAFKA_SECURITY_PROTOCOL', /SASL_SSL/);
    refuses({ KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SASL_MECHANISM: 'GSSAPI', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' }, 'KAFKA_SASL_MECHANISM');
  });

  it('refuses SASL without a user or a password, or with two passwords', () => {
    refuses({ KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SASL_PASSWORD: 'p' }, 'KAFKA_SASL_USERNAME');
    refuses({ KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SASL_USERNAME: 'u' }, 'KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE');
    refuses({ KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p', KAFKA_SASL_PASSWORD_FILE: file('p2', 'p') }, 'KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE');
  });

  it('refuses a password file that cannot be read or is empty, and a CA file that is no PEM certificate', () => {
    const sasl = { KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SASL_USERNAME: 'u' };
    refuses({ ...sasl, KAFKA_SASL_PASSWORD_FILE: path.join(dir, 'missing') }, 'KAFKA_SASL_PASSWORD_FILE', /cannot read/);
    refuses({ ...sasl, KAFKA_SASL_PASSWORD_FILE: file('empty', '\n') }, 'KAFKA_SASL_PASSWORD_FILE', /empty/);
    refuses({ KAFKA_SECURITY_PROTOCOL: 'SSL', KAFKA_TLS_CA_FILE: file('not-pem', 'hello') }, 'KAFKA_TLS_CA_FILE', /PEM/);
    refuses({ KAFKA_SECURITY_PROTOCOL: 'SSL', KAFKA_TLS_CA_FILE: path.join(dir, 'missing.pem') }, 'KAFKA_TLS_CA_FILE', /cannot read/);
  });

  it('refuses settings the protocol would ignore, rather than connecting without what they ask for', () => {
    refuses({ KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' }, 'KAFKA_SASL_USERNAME', /PLAINTEXT/);
    refuses({ KAFKA_SECURITY_PROTOCOL: 'SSL', KAFKA_SASL_PASSWORD: 'p' }, 'KAFKA_SASL_PASSWORD', /SSL/);
    refuses({ KAFKA_SASL_MECHANISM: 'PLAIN' }, 'KAFKA_SASL_MECHANISM');
    refuses({ KAFKA_SECURITY_PROTOCOL: 'SASL_PLAINTEXT', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p', KAFKA_TLS_CA_FILE: file('ca2.pem', CA_PEM) }, 'KAFKA_TLS_CA_FILE');
    refuses({ KAFKA_SECURITY_PROTOCOL: 'SASL_PLAINTEXT', KAFKA_SASL_MECHANISM: 'PLAIN', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' }, 'KAFKA_SASL_MECHANISM', /clear/);
  });

  it('gives the relay and totals services the same security through envKafkaConfig', () => {
    const config = envKafkaConfig({ KAFKA_BROKERS: 'a:1,b:2', KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SASL_USERNAME: 'summa-totals', KAFKA_SASL_PASSWORD: 'p' });
    const settings = kafkaSettingsOf(config, 'summa-totals');
    assert.deepEqual(settings.brokers, ['a:1', 'b:2']);
    assert.equal(settings.security?.sasl?.username, 'summa-totals');
    assert.throws(() => envKafkaConfig({ KAFKA_SECURITY_PROTOCOL: 'SASL_SSL' }), (error: unknown) => error instanceof ConfigError && error.message.startsWith('KAFKA_SASL_USERNAME'));
  });

  it('writes settings kept as files back into the variables it reads', () => {
    const env = kafkaSecurityEnv({ securityProtocol: 'SASL_SSL', saslMechanism: 'SCRAM-SHA-512', username: 'summa-admin', passwordFile: file('admin', 'pw'), caFile: file('ca3.pem', CA_PEM) });
    const security = envKafkaSecurity(env);
    assert.deepEqual(security.sasl, { mechanism: 'SCRAM-SHA-512', username: 'summa-admin', password: 'pw' });
    assert.deepEqual(kafkaSecurityEnv({}), { KAFKA_SECURITY_PROTOCOL: 'PLAINTEXT' });
  });
});
