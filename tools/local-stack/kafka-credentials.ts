// The SCRAM users of a local SASL_SSL Kafka cluster and their passwords, made once per data dir.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * summa-admin is the super user (the nodes among themselves, the launcher, `summa status`, tests);
 * summa-relay is the only one that may write the event topic; summa-totals reads it and writes the
 * dead-letter topic.
 */
export const KAFKA_USERS = ['summa-admin', 'summa-relay', 'summa-totals'] as const;
export type KafkaUser = (typeof KAFKA_USERS)[number];

export interface KafkaCredential {
  username: KafkaUser;
  password: string;
  /** Holds the password alone, mode 600: KAFKA_SASL_PASSWORD_FILE. */
  passwordFile: string;
}

/** Each user's password from `dir`, generated and stored (mode 600) the first time. */
export async function ensureKafkaCredentials(dir: string): Promise<Map<KafkaUser, KafkaCredential>> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const credentials = new Map<KafkaUser, KafkaCredential>();
  for (const username of KAFKA_USERS) {
    const passwordFile = path.join(dir, `${username}.password`);
    let password = (await readFile(passwordFile, 'utf8').catch(() => '')).trim();
    if (!password) {
      // base64url: nothing in it needs quoting in a JAAS config or in StorageTool's --add-scram syntax.
      password = randomBytes(24).toString('base64url');
      await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
    }
    await chmod(passwordFile, 0o600);
    credentials.set(username, { username, password, passwordFile });
  }
  return credentials;
}
