import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readCalculatorConfig } from '../../src/calculator/config.ts';
import { ConfigError } from '../../src/platform/config.ts';
import { outboxConnectorConfig } from '../../tools/local-stack/kafka-connect.ts';

const env = { DATABASE_URL: 'postgres://summa@127.0.0.1:55432/summa' };

describe('the relay mode (RELAY_MODE)', () => {
  it('is the poller unless configured', () => {
    assert.equal(readCalculatorConfig(env).relayMode, 'poller');
    assert.equal(readCalculatorConfig({ ...env, RELAY_MODE: 'debezium' }).relayMode, 'debezium');
  });

  it('refuses anything else, naming the variable and the modes', () => {
    for (const value of ['Debezium', 'cdc', 'kafka-connect']) {
      assert.throws(
        () => readCalculatorConfig({ ...env, RELAY_MODE: value }),
        (error: unknown) => error instanceof ConfigError && error.message.startsWith('RELAY_MODE') && /poller, debezium/.test(error.message),
      );
    }
  });
});

describe('the outbox connector config', () => {
  const config = outboxConnectorConfig({ database: { host: '127.0.0.1', port: 5432, user: 'summa', password: 'pw', name: 'summa' } });

  it('reads the outbox through pgoutput, its own publication and slot, without a snapshot', () => {
    assert.equal(config['plugin.name'], 'pgoutput');
    assert.equal(config['publication.name'], 'summa_outbox');
    assert.equal(config['publication.autocreate.mode'], 'disabled');
    assert.equal(config['slot.name'], 'summa_outbox');
    assert.equal(config['table.include.list'], 'calculator.outbox');
    assert.equal(config['snapshot.mode'], 'no_data');
  });

  it('writes keys and values as the columns’ text and leaves no header the poller does not write', () => {
    assert.equal(config['key.converter'], 'org.apache.kafka.connect.storage.StringConverter');
    assert.equal(config['value.converter'], 'org.apache.kafka.connect.storage.StringConverter');
    assert.equal(config['transforms.outbox.table.expand.json.payload'], 'false');
    assert.equal(config['extended.headers.enabled'], 'false');
    assert.equal(config['transforms.dropRouterId.headers'], 'id');
    // The untraced rows' null traceparent is dropped before the mark is taken off the topic.
    const chain = config.transforms!.split(',');
    assert.ok(chain.indexOf('untraced') < chain.indexOf('unmark'));
    assert.equal(chain[0], 'outbox');
  });
});
