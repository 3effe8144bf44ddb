import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from './config.ts';

type Env = Record<string, string | undefined>;

/** A server certificate chain and its private key, PEM. */
export interface TlsIdentity {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/**
 * TLS_CERT_FILE and TLS_KEY_FILE, read once at start-up: both set turns TLS on, neither leaves it
 * off, one without the other is a configuration error rather than a silently plaintext server.
 */
export function envTlsIdentity(env: Env): TlsIdentity | undefined {
  const certFile = env.TLS_CERT_FILE?.trim();
  const keyFile = env.TLS_KEY_FILE?.trim();
  if (!certFile && !keyFile) return undefined;
  if (!certFile) throw new ConfigError('TLS_KEY_FILE is set but TLS_CERT_FILE is not; set both to enable TLS');
  if (!keyFile) throw new ConfigError('TLS_CERT_FILE is set but TLS_KEY_FILE is not; set both to enable TLS');
  const cert = readPemFile(certFile, 'TLS_CERT_FILE', 'CERTIFICATE');
  const key = readPemFile(keyFile, 'TLS_KEY_FILE', 'PRIVATE KEY');
  return Object.freeze({ cert, key });
}

/** TLS_CA_FILE: the certificate authority a client trusts (for a self-signed or private CA). */
export function envTlsCa(env: Env): Buffer | undefined {
  const caFile = env.TLS_CA_FILE?.trim();
  return caFile ? readPemFile(caFile, 'TLS_CA_FILE', 'CERTIFICATE') : undefined;
}

export const MIN_WRITE_TOKEN_LENGTH = 16;

/** SUMMA_WRITE_TOKEN: when set, writes need `Authorization: Bearer <token>`. */
export function envWriteToken(env: Env): string | undefined {
  const token = env.SUMMA_WRITE_TOKEN?.trim();
  if (!token) return undefined;
  if (token.length < MIN_WRITE_TOKEN_LENGTH) {
    // The value itself is never echoed: it is a secret.
    throw new ConfigError(`SUMMA_WRITE_TOKEN must be at least ${MIN_WRITE_TOKEN_LENGTH} characters`);
  }
  if (!/^[\x21-\x7e]+$/.test(token)) throw new ConfigError('SUMMA_WRITE_TOKEN must be printable ASCII without spaces');
  return token;
}

/** A PEM file that `variable` names, read now; a ConfigError naming the variable if it is unreadable or holds no `label`. */
export function readPemFile(file: string, variable: string, label: string): Buffer {
  let content: Buffer;
  try {
    content = readFileSync(file);
  } catch (error) {
    throw new ConfigError(`${variable}: cannot read ${file}: ${(error as Error).message}`);
  }
  if (!content.toString('latin1').includes(`-----BEGIN `) || !content.toString('latin1').includes(label)) {
    throw new ConfigError(`${variable}: ${file} is not a PEM file with a ${label}`);
  }
  return content;
}

/**
 * Whether an Authorization header value carries `expected` as its bearer token. Both sides are
 * hashed first, so the comparison takes the same time whatever the length or content of the guess.
 */
export function bearerTokenMatches(authorization: unknown, expected: string): boolean {
  if (typeof authorization !== 'string') return false;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
  const given = createHash('sha256').update(match?.[1] ?? '').digest();
  const wanted = createHash('sha256').update(expected).digest();
  return timingSafeEqual(given, wanted) && match !== null;
}
