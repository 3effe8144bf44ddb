import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { pino } from 'pino';
import { startCalculator, type RunningCalculator } from '../../src/calculator/calculator-service.ts';
import { readCalculatorConfig } from '../../src/calculator/config.ts';
import { createBatchConsumer, type BatchConsumer } from '../../src/platform/kafka/batch-consumer.ts';
import type { IncomingRecord } from '../../src/platform/kafka/records.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { installTracing } from '../../src/platform/tracing/provider.ts';
import type { Tracing } from '../../src/platform/tracing/handle.ts';
import { activeTraceIds, tracer } from '../../src/platform/tracing/tracing.ts';
import { readRelayConfig } from '../../src/relay/config.ts';
import { startRelay, type RunningRelay } from '../../src/relay/relay-service.ts';
import { readTotalsConfig } from '../../src/totals/config.ts';
import { startTotals, type RunningTotals } from '../../src/totals/totals-service.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { CalculatorClient } from '../../tools/lib/grpc-clients.ts';
import { createTestDatabase, testKafkaBrokers, uniqueName, type TestDatabase } from '../support/test-environment.ts';

const logger = createLogger('tracing-test', { LOG_LEVEL: 'silent' });

/** What one traced Add left behind: its spans, and the Kafka record that carried it. */
describe('one trace from Add to the total, across the outbox and Kafka', () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  let database: TestDatabase;
  let calculator: RunningCalculator;
  let relay: RunningRelay;
  let totals: RunningTotals;
  let watcher: BatchConsumer;
  const seen: IncomingRecord[] = [];
  let env: Record<string, string>;

  before(async () => {
    tracing = installTracing('summa-test', [new SimpleSpanProcessor(exporter)]);
    database = await createTestDatabase('tracing');
    const [grpcPort, calculatorPort, relayPort, totalsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    env = {
      DATABASE_URL: database.url,
      KAFKA_BROKERS: testKafkaBrokers().join(','),
      KAFKA_TOPIC: uniqueName('tracing-sums'),
      KAFKA_TOPIC_PARTITIONS: '2',
      TOTALS_GROUP_ID: uniqueName('tracing-totals'),
      CALCULATOR_GRPC_PORT: String(grpcPort),
      CALCULATOR_HTTP_PORT: String(calculatorPort),
      RELAY_HTTP_PORT: String(relayPort),
      TOTALS_HTTP_PORT: String(totalsPort),
    };
    calculator = await startCalculator(readCalculatorConfig(env), logger);
    [relay, totals] = await Promise.all([startRelay(readRelayConfig(env), logger), startTotals(readTotalsConfig(env), logger)]);
    // A second group reads the topic too, to see the headers of the records as they are in Kafka.
    watcher = createBatchConsumer(
      { brokers: testKafkaBrokers(), clientId: 'tracing-test', groupId: uniqueName('tracing-watch'), topic: env.KAFKA_TOPIC! },
      async (records) => {
        seen.push(...records);
      },
    );
    await watcher.start();
  });

  after(async () => {
    await watcher?.close();
    await Promise.all([calculator?.stop(), relay?.stop(), totals?.stop()]);
    await tracing?.shutdown();
    await database?.drop();
  });

  async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  function spansOf(traceId: string): ReadableSpan[] {
    return exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
  }

  const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

  async function assertChain(serverSpan: ReadableSpan, requestId: string): Promise<void> {
    const traceId = serverSpan.spanContext().traceId;
    const apply = await waitFor('the apply span', () => spansOf(traceId).find((span) => span.kind === SpanKind.CONSUMER));
    const spans = spansOf(traceId);
    const write = spans.find((span) => span.name === 'calculator.outbox write');
    const publish = spans.find((span) => span.kind === SpanKind.PRODUCER);
    assert.ok(write, 'an outbox write span in the trace');
    assert.ok(publish, 'a publish span in the trace');
    assert.equal(parentOf(write), serverSpan.spanContext().spanId, 'the outbox write is a child of the server span');
    assert.equal(parentOf(publish), write.spanContext().spanId, 'the publish is a child of the outbox write');
    assert.equal(parentOf(apply), publish.spanContext().spanId, 'the apply is a child of the publish');
    assert.equal(publish.attributes['messaging.destination.name'], env.KAFKA_TOPIC);

    const record = await waitFor('the record in Kafka', () => seen.find((r) => r.key === requestId));
    assert.equal(
      record.headers.traceparent,
      `00-${traceId}-${publish.spanContext().spanId}-01`,
      'the Kafka record carries the publish span as its traceparent',
    );
  }

  it('links a gRPC Add, its outbox write, the publish and the apply', async () => {
    const client = new CalculatorClient(`127.0.0.1:${env.CALCULATOR_GRPC_PORT}`);
    const requestId = randomUUID();
    try {
      await client.add({ num1: 20, num2: 22, requestId });
    } finally {
      client.close();
    }
    const server = await waitFor('the gRPC server span', () =>
      exporter
        .getFinishedSpans()
        .find((span) => span.kind === SpanKind.SERVER && span.name === 'summa.v1.CalculatorService/Add'),
    );
    assert.equal(server.parentSpanContext, undefined, 'a call without a traceparent starts a new trace');
    await assertChain(server, requestId);
  });

  it('continues the caller’s trace for an HTTP Add with a traceparent', async () => {
    const callerTraceId = randomUUID().replaceAll('-', '');
    const callerSpanId = '00f067aa0ba902b7';
    const requestId = randomUUID();
    const response = await fetch(`http://127.0.0.1:${env.CALCULATOR_HTTP_PORT}/v1/sums`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${callerTraceId}-${callerSpanId}-01` },
      body: JSON.stringify({ num1: 1, num2: 2, requestId }),
    });
    assert.equal(response.status, 201);
    const server = await waitFor('the HTTP server span', () =>
      spansOf(callerTraceId).find((span) => span.kind === SpanKind.SERVER && span.name === 'POST /v1/sums'),
    );
    assert.equal(parentOf(server), callerSpanId, 'the server span is a child of the caller’s span');
    await assertChain(server, requestId);
    const total = (await (await fetch(`http://127.0.0.1:${totals.httpPort}/total`)).json()) as { total: string };
    assert.equal(total.total, '45');
  });

  it('puts trace_id and span_id on log lines written inside a span (the loggers’ mixin)', () => {
    const lines: string[] = [];
    const capture = pino({ mixin: activeTraceIds }, { write: (line: string) => lines.push(line) });
    tracer().startActiveSpan('logging', (span) => {
      capture.info('inside');
      span.end();
    });
    capture.info('outside');
    const [inside, outside] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.match(String(inside!.trace_id), /^[0-9a-f]{32}$/);
    assert.match(String(inside!.span_id), /^[0-9a-f]{16}$/);
    assert.equal(outside!.trace_id, undefined);
  });
});
