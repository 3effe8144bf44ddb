export { createBatchConsumer, type BatchConsumer, type BatchConsumerOptions } from './batch-consumer.ts';
export { createEventPublisher, type EventPublisher, type EventPublisherOptions } from './publisher.ts';
export type { IncomingRecord, OutgoingRecord } from './records.ts';
export { parseBrokerList, type KafkaSettings } from './settings.ts';
export { ensureTopic } from './topics.ts';
