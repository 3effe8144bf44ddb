import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { collectStatus } from '../../src/cli/status-command.ts';
import { exitCodeFor, STATUS_EXIT } from '../../src/cli/status-report.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { readRelayConfig } from '../../src/relay/config.ts';
import { startRelay, type RunningRelay } from '../../src/relay/relay-service.ts';
import { serviceEnvironment, type ServiceEnvironment } from '../support/service-environment.ts';
import { createTestDatabase, testKafkaBrokers, type TestDatabase } from '../support/test-environment.ts';

const logger = createLogger('outbox-age-test', { LOG_LEVEL: 'silent' });

/**
 * A real relay whose oldest outbox event nears the dedup window: an event another relay claimed
 * and died with, its lease running for an hour, that waits meanwhile. The relay stays ready and
 * says so in /readyz's warnings, and `summa status` shows it as a warning.
 */
describe('the relay against a dedup window its outbox nears', () => {
  let database: TestDatabase;
  let sql: pg.Pool;
  let where: ServiceEnvironment;
  let relay: RunningRelay;
  const eventId = randomUUID();

  const readyz = async () => {
    const response = await fetch(`${where.relayUrl}/readyz`);
    return { status: response.status, body: (await response.json()) as { status: string; warnings?: string[] } };
  };
  const waitForReadyz = async (until: (body: { warnings?: string[] }) => boolean) => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const answer = await readyz();
      if (until(answer.body)) return answer;
      if (Date.now() > deadline) assert.fail(`/readyz never got there: ${JSON.stringify(answer)}`);
      await sleep(200);
    }
  };

  before(async () => {
    database = await createTestDatabase('outbox_age');
    sql = new pg.Pool({ connectionString: database.url, max: 2 });
    where = await serviceEnvironment({ name: 'outbox-age', databaseUrl: database.url, partitions: 1 });
    relay = await startRelay(readRelayConfig({ ...where.env, DEDUP_WINDOW_SECONDS: '40', DEDUP_PARTITION_SECONDS: '10' }), logger);
  });

  after(async () => {
    await relay?.stop();
    await sql?.end();
    await database?.drop();
  });

  it('exports the window beside the age, and warns without turning unready once an event waited half of it', async () => {
    assert.deepEqual(await readyz(), { status: 200, body: { status: 'ready' } });
    const metrics = await (await fetch(`${where.relayUrl}/metrics`)).text();
    assert.match(metrics, /^summa_outbox_dedup_window_seconds(\{[^}]*\})? 40$/m);

    await sql.query(
      `INSERT INTO calculator.outbox (event_id, topic, message_key, payload, created_at, claimed_by, claimed_until)
       VALUES ($1, $2, 'late', '{}', now() - interval '30 seconds', 'a relay that died', now() + interval '1 hour')`,
      [eventId, where.env.KAFKA_TOPIC],
    );
    const warned = await waitForReadyz((body) => (body.warnings?.length ?? 0) > 0);
    assert.equal(warned.status, 200);
    assert.equal(warned.body.status, 'ready');
    assert.match(warned.body.warnings![0]!, /the oldest outbox event has waited \d+ s, more than 50% of the dedup window \(DEDUP_WINDOW_SECONDS=40\)/);

    const report = await collectStatus(
      {
        topology: 'single',
        launcherPid: process.pid,
        startedAt: new Date().toISOString(),
        databaseUrl: database.url,
        kafkaBrokers: testKafkaBrokers().join(','),
        consumerGroup: where.env.TOTALS_GROUP_ID!,
        topic: where.env.KAFKA_TOPIC!,
        components: [{ name: 'relay', role: 'relay', pid: process.pid, ports: [Number(new URL(where.relayUrl).port)], healthUrl: `${where.relayUrl}/readyz` }],
      },
      '/unused',
      { SUMMA_STATUS_TIMEOUT_MS: '10000' },
    );
    const [component] = report.components;
    assert.deepEqual([component!.healthy, component!.detail], [true, 'ready, with a warning']);
    assert.equal(report.healthy, true);
    assert.ok(report.warnings.some((warning) => /^relay: the oldest outbox event has waited/.test(warning)), JSON.stringify(report.warnings));
    assert.equal(exitCodeFor(report), STATUS_EXIT.warning);

    await sql.query('DELETE FROM calculator.outbox WHERE event_id = $1', [eventId]);
    assert.deepEqual((await waitForReadyz((body) => body.warnings === undefined)).body, { status: 'ready' });
  });
});
