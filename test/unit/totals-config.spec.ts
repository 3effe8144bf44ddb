import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/platform/config.ts';
import { readTotalsConfig } from '../../src/totals/config.ts';

describe('the totals service read replica setting', () => {
  it('reads the primary unless TOTALS_READ_DATABASE_URL is set', () => {
    assert.equal(readTotalsConfig({}).readDatabaseUrl, undefined);
    assert.equal(readTotalsConfig({ TOTALS_READ_DATABASE_URL: '  ' }).readDatabaseUrl, undefined);
    const url = 'postgres://summa:summa@127.0.0.1:55433/summa';
    assert.equal(readTotalsConfig({ TOTALS_READ_DATABASE_URL: url }).readDatabaseUrl, url);
  });

  it('refuses a URL that is not PostgreSQL, naming the variable', () => {
    assert.throws(
      () => readTotalsConfig({ TOTALS_READ_DATABASE_URL: 'mysql://127.0.0.1/summa' }),
      (error: unknown) => error instanceof ConfigError && /^TOTALS_READ_DATABASE_URL must be a postgres:\/\/ connection URL$/.test(error.message),
    );
  });
});
