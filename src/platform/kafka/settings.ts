/** Where a service finds Kafka and how it names itself there. */
export interface KafkaSettings {
  /** "host:port" bootstrap addresses. */
  brokers: string[];
  clientId: string;
}

/** "127.0.0.1:9092, other:9092" -> ["127.0.0.1:9092", "other:9092"] */
export function parseBrokerList(list: string): string[] {
  return list
    .split(',')
    .map((broker) => broker.trim())
    .filter((broker) => broker.length > 0);
}

/** The options every @platformatic/kafka client takes, from our settings. */
export function baseClientOptions(settings: KafkaSettings) {
  if (settings.brokers.length === 0) throw new Error('KafkaSettings.brokers is empty');
  return {
    clientId: settings.clientId,
    bootstrapBrokers: settings.brokers,
    connectTimeout: 5_000,
    timeout: 10_000,
  };
}
