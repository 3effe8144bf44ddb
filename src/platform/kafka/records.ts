import type { Message, MessageToProduce } from '@platformatic/kafka';

/** A record to publish. The key picks the partition (Java-client compatible murmur2). */
export interface OutgoingRecord {
  key: string;
  value: Buffer | string;
  headers?: Record<string, string>;
}

/** A consumed record: values stay raw bytes, keys and headers are UTF-8 strings. */
export interface IncomingRecord {
  topic: string;
  /**
   * The id Kafka gave the topic when it was created: a topic deleted and created again under the
   * same name has another, so offsets stored under the old one are not taken for the new one's.
   */
  topicId: string;
  partition: number;
  offset: bigint;
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
  timestamp: bigint;
}

export function toKafkaMessage(topic: string, record: OutgoingRecord): MessageToProduce {
  const headers = new Map<Buffer, Buffer>();
  for (const [name, value] of Object.entries(record.headers ?? {})) {
    headers.set(Buffer.from(name), Buffer.from(value));
  }
  return {
    topic,
    key: Buffer.from(record.key),
    value: typeof record.value === 'string' ? Buffer.from(record.value) : record.value,
    headers,
  };
}

export function fromKafkaMessage(message: Message, topicId: string): IncomingRecord {
  const headers: Record<string, string> = {};
  for (const [name, value] of message.headers) {
    headers[name.toString()] = value?.toString() ?? '';
  }
  return {
    topic: message.topic,
    topicId,
    partition: message.partition,
    offset: message.offset,
    // Null keys/values arrive as undefined through the no-op deserializers.
    key: message.key ? message.key.toString() : null,
    value: message.value ?? Buffer.alloc(0),
    headers,
    timestamp: message.timestamp,
  };
}
