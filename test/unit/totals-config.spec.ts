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

describe('the totals service commit interval', () => {
  it('commits at most every 200 ms by default; TOTALS_COMMIT_INTERVAL_MS sets it, 0 included', () => {
    assert.equal(readTotalsConfig({}).commitIntervalMs, 200);
    assert.equal(readTotalsConfig({ TOTALS_COMMIT_INTERVAL_MS: '0' }).commitIntervalMs, 0);
    assert.equal(readTotalsConfig({ TOTALS_COMMIT_INTERVAL_MS: '1000' }).commitIntervalMs, 1000);
  });

  it('refuses a value that is not a whole number of milliseconds, naming the variable', () => {
    assert.throws(() => readTotalsConfig({ TOTALS_COMMIT_INTERVAL_MS: '-1' }), (error: unknown) => error instanceof ConfigError && /TOTALS_COMMIT_INTERVAL_MS/.test(error.message));
    assert.throws(() => readTotalsConfig({ TOTALS_COMMIT_INTERVAL_MS: 'soon' }), (error: unknown) => error instanceof ConfigError && /TOTALS_COMMIT_INTERVAL_MS/.test(error.message));
  });
});
