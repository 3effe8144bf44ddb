import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CALCULATOR_MIGRATIONS, OUTBOX_CHANNEL } from '../../src/calculator/schema.ts';

describe('calculator schema', () => {
  const sql = readdirSync(CALCULATOR_MIGRATIONS)
    .filter((name) => name.endsWith('.sql'))
    .map((name) => readFileSync(path.join(CALCULATOR_MIGRATIONS, name), 'utf8'))
    .join('\n');

  it('notifies on the channel the relay listens on', () => {
    const channels = [...sql.matchAll(/pg_notify\(\s*'([^']*)'/g)].map((match) => match[1]);
    assert.ok(channels.length > 0, 'the migrations notify on some channel');
    assert.deepEqual(new Set(channels), new Set([OUTBOX_CHANNEL]));
  });
});
