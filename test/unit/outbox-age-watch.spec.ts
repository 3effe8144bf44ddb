import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { ConfigError } from '../../src/platform/config.ts';
import { readRelayConfig } from '../../src/relay/config.ts';
import { OUTBOX_AGE_WARNING_FRACTION, OutboxAgeWatch, outboxAgeWarning } from '../../src/relay/outbox-age-watch.ts';

const env = { DATABASE_URL: 'postgres://summa@127.0.0.1:55432/summa' };

describe('the outbox age against the dedup window', () => {
  it('the relay reads DEDUP_WINDOW_SECONDS as the totals service does: 7 days unless set, named when bad', () => {
    assert.equal(readRelayConfig(env).dedupWindowSeconds, 604_800);
    assert.equal(readRelayConfig({ ...env, DEDUP_WINDOW_SECONDS: '3600', DEDUP_PARTITION_SECONDS: '600' }).dedupWindowSeconds, 3_600);
    assert.throws(() => readRelayConfig({ ...env, DEDUP_WINDOW_SECONDS: 'a week' }), (error: Error) => error instanceof ConfigError && /DEDUP_WINDOW_SECONDS/.test(error.message));
  });

  it('warns once the oldest event has waited more than half the window, not before', () => {
    assert.equal(OUTBOX_AGE_WARNING_FRACTION, 0.5);
    assert.equal(outboxAgeWarning(0, 600), undefined);
    assert.equal(outboxAgeWarning(300, 600), undefined);
    const warning = outboxAgeWarning(301, 600);
    assert.match(warning ?? '', /oldest outbox event has waited 301 s, more than 50% of the dedup window \(DEDUP_WINDOW_SECONDS=600\)/);
    assert.match(warning ?? '', /quarantined/);
  });

  it('holds the warning while the age calls for it, keeps it through a failed reading, and clears it', async () => {
    const ages: (number | Error)[] = [10, 400, new Error('connection refused'), 20];
    const logged: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line).msg) });
    const watch = new OutboxAgeWatch(
      async () => {
        const next = ages.shift()!;
        if (next instanceof Error) throw next;
        return next;
      },
      600,
      1_000,
      logger,
    );
    await watch.check();
    assert.deepEqual(watch.warnings(), []);
    await watch.check();
    assert.equal(watch.warnings().length, 1);
    await watch.check();
    assert.equal(watch.warnings().length, 1, 'a failed reading says nothing of the age');
    await watch.check();
    assert.deepEqual(watch.warnings(), []);
    assert.equal(logged.filter((msg) => /more than 50% of the dedup window/.test(msg)).length, 1);
    assert.ok(logged.some((msg) => /again well within the dedup window/.test(msg)));
  });

  it('looks often enough for a short window and at most every 15 s for a long one', () => {
    assert.equal(OutboxAgeWatch.intervalFor(604_800), 15_000);
    assert.equal(OutboxAgeWatch.intervalFor(4), 1_000);
    assert.equal(OutboxAgeWatch.intervalFor(100), 5_000);
  });
});

describe('/readyz warnings', () => {
  it('answers 200 with the warnings beside "ready", and only the status while there is none', async () => {
    const { createHttpServer } = await import('../../src/platform/http/server.ts');
    const { Registry } = await import('prom-client');
    let warnings: string[] = [];
    let reason: string | undefined;
    const http = createHttpServer({ logger: pino({ level: 'silent' }), registry: new Registry(), isReady: () => true, notReadyReason: () => reason, warnings: () => warnings });
    try {
      const quiet = await http.inject({ method: 'GET', url: '/readyz' });
      assert.equal(quiet.statusCode, 200);
      assert.deepEqual(quiet.json(), { status: 'ready' });
      warnings = ['the oldest outbox event has waited 400 s'];
      const warned = await http.inject({ method: 'GET', url: '/readyz' });
      assert.equal(warned.statusCode, 200, 'a warning never fails readiness');
      assert.deepEqual(warned.json(), { status: 'ready', warnings });
      reason = 'consumer stopped';
      const refused = await http.inject({ method: 'GET', url: '/readyz' });
      assert.equal(refused.statusCode, 503);
      assert.deepEqual(refused.json(), { status: 'not ready', reason, warnings });
    } finally {
      await http.close();
    }
  });
});
