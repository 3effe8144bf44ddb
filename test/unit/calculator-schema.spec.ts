import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CALCULATOR_MIGRATIONS } from '../../src/calculator/schema.ts';

describe('calculator schema', () => {
  const migrations = readdirSync(CALCULATOR_MIGRATIONS)
    .filter((name) => name.endsWith('.sql'))
    .sort()
    .map((name) => readFileSync(path.join(CALCULATOR_MIGRATIONS, name), 'utf8').replace(/--.*$/gm, ''));

  // A trigger that notifies runs inside the write transaction, whose COMMIT then takes PostgreSQL's
  // notify lock, one for the whole server: the calculators' commits would wait for each other. The
  // calculator wakes the relays after its commit instead (OutboxNotifier).
  it('leaves no trigger in place once every migration ran: the last word on each is a DROP', () => {
    const last = new Map<string, 'created' | 'dropped'>();
    for (const sql of migrations) {
      for (const match of sql.matchAll(/\b(CREATE|DROP)\s+TRIGGER\s+(?:IF\s+EXISTS\s+)?(\w+)/gi)) {
        last.set(match[2]!.toLowerCase(), match[1]!.toUpperCase() === 'CREATE' ? 'created' : 'dropped');
      }
    }
    assert.ok(last.size > 0, 'migration 001 created the notify trigger that a later one drops');
    assert.deepEqual([...last].filter(([, state]) => state === 'created'), []);
  });
});
