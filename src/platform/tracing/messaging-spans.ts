import { contextFromHeaders, recordFailure, recordingSpanIn, SpanKind, tracer, type Context, type Span } from './tracing.ts';

// The spans of an event's way through the pipeline, one starter per role: the outbox write that
// stores it with the request, the relay's send to Kafka, the consumer's processing. Each returns
// undefined when the item's trace is not known, so a batch keeps one (possibly empty) slot per item.

type Headers = Record<string, string | string[] | undefined>;

/**
 * The span of writing an event into the outbox, child of the request's span; only when that span
 * records, so untraced requests write no trace headers.
 */
export function startOutboxWriteSpan(
  outbox: { table: string; batchSize: number },
  parent: Context,
): Span | undefined {
  if (!recordingSpanIn(parent)) return undefined;
  const attributes = { 'db.system.name': 'postgresql', 'db.collection.name': outbox.table, 'summa.batch_size': outbox.batchSize };
  return tracer().startSpan(`${outbox.table} write`, { attributes }, parent);
}

/**
 * A producer span for a message whose parent headers (the outbox row's) carry a traceparent, child
 * of the span that wrote it; the record sent then carries this span's traceparent instead.
 */
export function startProducerSpan(message: { topic: string; id: string }, parentHeaders: Headers): Span | undefined {
  if (parentHeaders.traceparent === undefined) return undefined;
  const attributes = {
    'messaging.system': 'kafka',
    'messaging.operation.type': 'send',
    'messaging.destination.name': message.topic,
    'messaging.message.id': message.id,
  };
  return tracer().startSpan(`send ${message.topic}`, { kind: SpanKind.PRODUCER, attributes }, contextFromHeaders(parentHeaders));
}

/** A consumer span for a record whose headers carry a traceparent, child of the producer's span. */
export function startConsumerSpan(
  record: { topic: string; partition: number; offset: bigint },
  parentHeaders: Headers,
): Span | undefined {
  if (parentHeaders.traceparent === undefined) return undefined;
  const attributes = {
    'messaging.system': 'kafka',
    'messaging.operation.type': 'process',
    'messaging.destination.name': record.topic,
    'messaging.destination.partition.id': String(record.partition),
    'messaging.kafka.offset': Number(record.offset),
  };
  return tracer().startSpan(`process ${record.topic}`, { kind: SpanKind.CONSUMER, attributes }, contextFromHeaders(parentHeaders));
}

/** Ends every span started for a batch, each marked failed with `error` when one is given. */
export function endSpans(spans: Iterable<Span | undefined> | undefined, error?: unknown): void {
  for (const span of spans ?? []) {
    if (!span) continue;
    if (error !== undefined) recordFailure(span, error);
    span.end();
  }
}
