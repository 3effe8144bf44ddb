import { readFileSync } from 'node:fs';
import { ConfigError, type Env } from '../config.ts';
import { readPemFile } from '../security.ts';

/** How long a publish may take before it fails (KAFKA_PUBLISH_TIMEOUT_MS in the services). */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 20_000;

export const KAFKA_SECURITY_PROTOCOLS = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'] as const;
export type KafkaSecurityProtocol = (typeof KAFKA_SECURITY_PROTOCOLS)[number];
export const KAFKA_SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];

/** How a client proves who it is to Kafka and whom it trusts. */
export interface KafkaSecurity {
  readonly protocol: KafkaSecurityProtocol;
  /** Set exactly when the protocol is SASL_PLAINTEXT or SASL_SSL. */
  readonly sasl?: { readonly mechanism: KafkaSaslMechanism; readonly username: string; readonly password: string } | undefined;
  /** PEM certificate(s) to trust instead of Node's default CAs (SSL and SASL_SSL only). */
  readonly ca?: Buffer | undefined;
}

/** Where a service finds Kafka and how it names itself there. */
export interface KafkaSettings {
  /** "host:port" bootstrap addresses. */
  brokers: string[];
  clientId: string;
  /** Unset: PLAINTEXT. */
  security?: KafkaSecurity | undefined;
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
  const { protocol = 'PLAINTEXT', sasl, ca } = settings.security ?? {};
  const tls = protocol === 'SSL' || protocol === 'SASL_SSL';
  return {
    clientId: settings.clientId,
    bootstrapBrokers: settings.brokers,
    connectTimeout: 5_000,
    timeout: 10_000,
    ...(tls ? { tls: ca ? { ca } : {} } : {}),
    ...(sasl ? { sasl: { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password } } : {}),
  };
}

/**
 * KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD or
 * KAFKA_SASL_PASSWORD_FILE and KAFKA_TLS_CA_FILE, read once (files included) at start-up. A
 * setting that the protocol would ignore is an error rather than silently unused: a password set
 * for a PLAINTEXT protocol means the operator expected authentication that would not happen.
 */
export function envKafkaSecurity(env: Env): KafkaSecurity {
  const value = (name: string) => env[name]?.trim() || undefined;
  const rawProtocol = value('KAFKA_SECURITY_PROTOCOL') ?? 'PLAINTEXT';
  const protocol = KAFKA_SECURITY_PROTOCOLS.find((known) => known === rawProtocol.toUpperCase());
  if (!protocol) {
    throw new ConfigError(`KAFKA_SECURITY_PROTOCOL must be one of ${KAFKA_SECURITY_PROTOCOLS.join(', ')}, got ${JSON.stringify(rawProtocol)}`);
  }
  const usesSasl = protocol === 'SASL_PLAINTEXT' || protocol === 'SASL_SSL';
  const usesTls = protocol === 'SSL' || protocol === 'SASL_SSL';
  const saslVariables = ['KAFKA_SASL_MECHANISM', 'KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD', 'KAFKA_SASL_PASSWORD_FILE'];
  if (!usesSasl) {
    const stray = saslVariables.find((name) => value(name) !== undefined);
    if (stray) throw new ConfigError(`${stray} is set but KAFKA_SECURITY_PROTOCOL is ${protocol}; set it to SASL_SSL or SASL_PLAINTEXT to authenticate`);
  }
  const caFile = value('KAFKA_TLS_CA_FILE');
  if (caFile && !usesTls) throw new ConfigError(`KAFKA_TLS_CA_FILE is set but KAFKA_SECURITY_PROTOCOL is ${protocol}; set it to SSL or SASL_SSL to use TLS`);
  const ca = caFile ? readPemFile(caFile, 'KAFKA_TLS_CA_FILE', 'CERTIFICATE') : undefined;
  if (!usesSasl) return Object.freeze({ protocol, ca });

  const rawMechanism = value('KAFKA_SASL_MECHANISM') ?? 'SCRAM-SHA-512';
  const mechanism = KAFKA_SASL_MECHANISMS.find((known) => known === rawMechanism.toUpperCase());
  if (!mechanism) {
    throw new ConfigError(`KAFKA_SASL_MECHANISM must be one of ${KAFKA_SASL_MECHANISMS.join(', ')}, got ${JSON.stringify(rawMechanism)}`);
  }
  // PLAIN sends the password itself; over a connection without TLS anyone on the path reads it.
  if (mechanism === 'PLAIN' && !usesTls) {
    throw new ConfigError('KAFKA_SASL_MECHANISM PLAIN sends the password in the clear; use it with KAFKA_SECURITY_PROTOCOL SASL_SSL');
  }
  const username = value('KAFKA_SASL_USERNAME');
  if (!username) throw new ConfigError(`KAFKA_SASL_USERNAME is required when KAFKA_SECURITY_PROTOCOL is ${protocol}`);
  const password = envSaslPassword(env, protocol);
  return Object.freeze({ protocol, ca, sasl: Object.freeze({ mechanism, username, password }) });
}

function envSaslPassword(env: Env, protocol: KafkaSecurityProtocol): string {
  // The password itself is never trimmed or echoed: spaces may be part of it.
  const given = env.KAFKA_SASL_PASSWORD;
  const file = env.KAFKA_SASL_PASSWORD_FILE?.trim();
  if (given && file) throw new ConfigError('KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set; set only one');
  if (given) return given;
  if (!file) throw new ConfigError(`KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE is required when KAFKA_SECURITY_PROTOCOL is ${protocol}`);
  let content: string;
  try {
    content = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`KAFKA_SASL_PASSWORD_FILE: cannot read ${file}: ${(error as Error).message}`);
  }
  // Files written by editors and `echo` end with a newline that is no part of the password.
  const password = content.replace(/\r?\n$/, '');
  if (!password) throw new ConfigError(`KAFKA_SASL_PASSWORD_FILE: ${file} is empty`);
  return password;
}

/** A client's settings as files and names (as the launcher's run state keeps them), without secrets. */
export interface KafkaClientFiles {
  securityProtocol?: KafkaSecurityProtocol | undefined;
  saslMechanism?: string | undefined;
  username?: string | undefined;
  passwordFile?: string | undefined;
  caFile?: string | undefined;
}

/** The variables envKafkaSecurity reads, for these settings (to pass to a service, or to read them back). */
export function kafkaSecurityEnv(files: KafkaClientFiles): Record<string, string> {
  const env: Record<string, string> = { KAFKA_SECURITY_PROTOCOL: files.securityProtocol ?? 'PLAINTEXT' };
  if (files.saslMechanism) env.KAFKA_SASL_MECHANISM = files.saslMechanism;
  if (files.username) env.KAFKA_SASL_USERNAME = files.username;
  if (files.passwordFile) env.KAFKA_SASL_PASSWORD_FILE = files.passwordFile;
  if (files.caFile) env.KAFKA_TLS_CA_FILE = files.caFile;
  return env;
}
