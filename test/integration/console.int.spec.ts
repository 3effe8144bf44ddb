import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { encodeSumAccepted } from '../../src/events/sum-accepted.ts';
import { createEventPublisher, type EventPublisher } from '../../src/platform/kafka/publisher.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { readTotalsConfig } from '../../src/totals/config.ts';
import { startTotals, type RunningTotals } from '../../src/totals/totals-service.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { createTestDatabase, testKafkaBrokers, uniqueName, type TestDatabase } from '../support/test-environment.ts';

const logger = createLogger('console-test', { LOG_LEVEL: 'silent' });

// The totals service alone (no calculator, no run state): what the console shows and how it says
// what it cannot see. The whole page in a browser on `npm start` is test/e2e/console.e2e.spec.ts.
describe('the console endpoints of the totals service', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let publisher: EventPublisher;
  let totals: RunningTotals;
  let base: string;
  let calculatorPort: number;
  const topic = uniqueName('console');

  before(async () => {
    database = await createTestDatabase('console');
    calculatorPort = await freePort(); // nothing listens there
    publisher = createEventPublisher({ brokers: testKafkaBrokers(), clientId: 'console-test' });
    totals = await startTotals(
      readTotalsConfig({
        TOTALS_HTTP_PORT: '0',
        DATABASE_URL: database.url,
        KAFKA_BROKERS: testKafkaBrokers().join(','),
        KAFKA_TOPIC: topic,
        KAFKA_TOPIC_PARTITIONS: '2',
        TOTALS_GROUP_ID: uniqueName('console-group'),
        TOTALS_CONSOLE_CALCULATOR_URL: `http://127.0.0.1:${calculatorPort}`,
      }),
      logger,
    );
    base = `http://127.0.0.1:${totals.httpPort}`;
  });

  let stopped = false;

  after(async () => {
    if (!stopped) await totals?.stop();
    await publisher?.close();
    await database?.drop();
  });

  const get = async (path: string) => {
    const response = await fetch(`${base}${path}`);
    return { status: response.status, body: (await response.json()) as any };
  };

  it('serves the page and its files, and nothing from elsewhere', async () => {
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /^text\/html/);
    assert.match(page.headers.get('content-security-policy')!, /default-src 'self'/);
    const html = await page.text();
    assert.match(html, /<title>Summa console<\/title>/);
    assert.doesNotMatch(html, /https?:\/\//, 'no external resource');
    for (const file of ['/console/console.js', '/console/console.css']) assert.equal((await fetch(`${base}${file}`)).status, 200, file);
  });

  it('streams a sample every second, saying which figures it cannot read', async () => {
    const controller = new AbortController();
    const response = await fetch(`${base}/console/events`, { signal: controller.signal });
    assert.match(response.headers.get('content-type')!, /^text\/event-stream/);
    const decoder = new TextDecoder();
    let text = '';
    const started = Date.now();
    try {
      for await (const chunk of response.body!) {
        text += decoder.decode(chunk as Uint8Array, { stream: true });
        if ((text.match(/^event: sample$/gm) ?? []).length >= 2) break;
        assert.ok(Date.now() - started < 10_000, `two samples within 10 s; got ${text}`);
      }
    } finally {
      controller.abort();
    }
    assert.match(text, /^event: history$/m);
    const samples = [...text.matchAll(/^event: sample\ndata: (.*)$/gm)].map((match) => JSON.parse(match[1]!));
    assert.ok(Date.now() - started < 4_000, 'the second sample comes about a second after the first');
    const last = samples.at(-1);
    assert.equal(last.total, '0');
    assert.equal(last.count, 0);
    assert.equal(last.appliedPerSecond, 0);
    assert.deepEqual(last.endToEnd, { events: 0, p50: null, p99: null });
    // No calculator schema in this database: said, not hidden.
    assert.ok(last.problems.some((problem: string) => problem.includes('calculator.outbox_id_seq')), JSON.stringify(last.problems));
    assert.deepEqual(last.components.map((c: { name: string; healthy: boolean }) => [c.name, c.healthy]), [['totals (this instance)', true]]);
  });

  it('traces an applied request, browses its record and the dead letters', async () => {
    const requestId = `console-${randomUUID()}`;
    const event = encodeSumAccepted({ eventId: randomUUID(), requestId, num1: 20n, num2: 22n, sum: 42n, acceptedAt: new Date() });
    await publisher.publish(topic, [{ key: requestId, value: event }, { key: 'poison', value: 'not an event' }]);

    let trace = (await get(`/console/requests/${encodeURIComponent(requestId)}`)).body;
    for (const deadline = Date.now() + 30_000; trace.stage !== 'applied' && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      trace = (await get(`/console/requests/${encodeURIComponent(requestId)}`)).body;
    }
    assert.equal(trace.stage, 'applied', JSON.stringify(trace));
    assert.equal(typeof trace.applied.partition, 'number');
    assert.ok(trace.problems.some((problem: string) => problem.includes('calculator.requests')));

    const topics = (await get('/console/topics')).body;
    const view = topics.topics.find((t: { name: string }) => t.name === topic);
    assert.equal(view.partitions.length, 2);
    assert.ok(topics.topics.some((t: { name: string }) => t.name === `${topic}.dlq`));
    const partition = view.partitions[trace.applied.partition];
    assert.equal(partition.leader, 1);
    assert.deepEqual(partition.isr, [1]);

    const records = (await get(`/console/topics/${topic}/partitions/${trace.applied.partition}/records?limit=5`)).body.records;
    const record = records.find((r: { key: string }) => r.key === requestId);
    assert.equal(record.offset, trace.applied.offset);
    assert.equal(record.decoded.sum, '42');

    let dead = (await get('/console/dead-letters')).body;
    for (const deadline = Date.now() + 30_000; dead.parked === 0 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      dead = (await get('/console/dead-letters')).body;
    }
    assert.equal(dead.parked, 1);
    assert.equal(dead.records[0].key, 'poison');
    assert.match(dead.records[0].reason, /./);

    // The dead-letter topic's record carries the reason in a header, and the browser shows it.
    const dlqPartitions = (await get('/console/topics')).body.topics.find((t: { name: string }) => t.name === `${topic}.dlq`).partitions;
    const withRecords = dlqPartitions.find((p: { end: string }) => p.end !== '0');
    const letters = (await get(`/console/topics/${topic}.dlq/partitions/${withRecords.partition}/records`)).body.records;
    assert.equal(letters[0].key, 'poison');
    assert.equal(letters[0].reason, dead.records[0].reason);
    assert.ok('error' in letters[0].decoded);

    assert.equal((await get('/console/requests/never-sent')).body.stage, 'unknown');
  });

  it('answers bad input with a 4xx that says what is wrong, and a calculator that is down with a 503 naming it', async () => {
    const cases: [string, number, RegExp][] = [
      [`/console/topics/${topic}/partitions/x/records`, 400, /partition must be a whole number/],
      [`/console/topics/${topic}/partitions/0/records?limit=0`, 400, /limit must be a whole number from 1 to 100/],
      [`/console/topics/${topic}/partitions/0/records?limit=101`, 400, /limit must be a whole number from 1 to 100/],
      [`/console/topics/${topic}/partitions/7/records`, 404, /has no partition 7/],
      [`/console/requests/${'x'.repeat(129)}`, 400, /at most 128 characters/],
    ];
    for (const [path, status, message] of cases) {
      const answer = await get(path);
      assert.equal(answer.status, status, path);
      assert.match(answer.body.error.message, message, path);
    }
    const response = await fetch(`${base}/console/sums`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"num1":1,"num2":2}' });
    assert.equal(response.status, 503);
    assert.match(((await response.json()) as any).error.message, new RegExp(`the calculator at http://127\\.0\\.0\\.1:${calculatorPort} did not answer: ECONNREFUSED`));
  });

  // Last: it stops the service.
  it('ends the open event streams when the service stops, rather than waiting on them', async () => {
    const response = await fetch(`${base}/console/events`);
    const reader = response.body!.getReader();
    await reader.read(); // the history: the stream is open
    const started = Date.now();
    stopped = true;
    await totals.stop();
    assert.ok(Date.now() - started < 5_000, `stopped in ${Date.now() - started} ms with a page open`);
    for (;;) if ((await reader.read()).done) break;
  });
});
