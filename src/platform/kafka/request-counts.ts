import { subscribe, unsubscribe } from 'node:diagnostics_channel';

// @platformatic/kafka's tracing channels (see its diagnostic.js): every request a connection
// sends, and every send() of a producer.
const API_CHANNEL = 'tracing:plt:kafka:connections:api:asyncStart';
const SEND_CHANNEL = 'tracing:plt:kafka:producer:sends:start';
// Kafka protocol API keys.
const PRODUCE = 0;
const FETCH = 1;
const OFFSET_COMMIT = 8;

/** What one request of a connection reports on the library's channel. */
interface ApiRequest {
  apiKey?: number;
  result?: unknown;
  error?: unknown;
}

/** A fetch response as the library parses it: the record batches of each partition. */
interface FetchResponse {
  responses?: { partitions?: { records?: { records?: unknown[] }[] }[] }[];
}

interface ProducerSend {
  options?: { messages?: unknown[] };
}

export interface KafkaRequestListener {
  /** A producer was asked to send `records` records (one or more produce requests). */
  onSend?: (records: number) => void;
  /** A produce request was answered without error. */
  onProduce?: () => void;
  /** A fetch response arrived with `records` records in it (0 when the wait ran out empty). */
  onFetch?: (records: number) => void;
  /** An offset commit was answered without error. */
  onOffsetCommit?: () => void;
}

/**
 * Follows the requests this process's Kafka clients send, at the wire: a producer's send of N
 * records is one produce request per broker leading their partitions, and a consumer's fetch loop
 * is one fetch request per broker, so counting at the client API would be off by that split.
 * The channel carries every client of the process, so a service that both produces and consumes
 * tells the two apart by the API only. Returns the unsubscribe function.
 */
export function followKafkaRequests(listener: KafkaRequestListener): () => void {
  const handler = (message: unknown) => {
    const request = message as ApiRequest;
    if (request.error) return;
    if (request.apiKey === PRODUCE) listener.onProduce?.();
    else if (request.apiKey === FETCH) listener.onFetch?.(fetchedRecords(request.result as FetchResponse | undefined));
    else if (request.apiKey === OFFSET_COMMIT) listener.onOffsetCommit?.();
  };
  const sendHandler = (message: unknown) => listener.onSend?.((message as ProducerSend).options?.messages?.length ?? 0);
  // asyncStart: published when the response has been parsed, just before the caller's callback.
  subscribe(API_CHANNEL, handler);
  subscribe(SEND_CHANNEL, sendHandler);
  return () => {
    unsubscribe(API_CHANNEL, handler);
    unsubscribe(SEND_CHANNEL, sendHandler);
  };
}

function fetchedRecords(response: FetchResponse | undefined): number {
  let records = 0;
  for (const topic of response?.responses ?? []) {
    for (const partition of topic.partitions ?? []) {
      for (const batch of partition.records ?? []) records += batch.records?.length ?? 0;
    }
  }
  return records;
}
