// The certificates of a local SASL_SSL Kafka cluster: a CA of its own, and one certificate for
// 127.0.0.1 and localhost that every node serves (the nodes share the address, so one will do).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ensureTool } from '../lib/tools.ts';

export interface KafkaTlsFiles {
  /** The CA certificate (PEM) that clients trust: KAFKA_TLS_CA_FILE. */
  caFile: string;
  /** The nodes' private key followed by their certificate (PEM), for ssl.keystore.type=PEM; mode 600. */
  keystoreFile: string;
}

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[node_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
# Nodes are clients of each other too (inter-broker and controller connections).
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
`;

/**
 * The CA and the nodes' certificate in `dir`, made with the openssl CLI (tools/setup/50-openssl.sh)
 * the first time and kept: clients given the CA file once go on trusting the cluster across restarts.
 */
export async function ensureKafkaTls(dir: string): Promise<KafkaTlsFiles> {
  const files = { caFile: path.join(dir, 'ca.pem'), keystoreFile: path.join(dir, 'node-keystore.pem') };
  if (existsSync(files.caFile) && existsSync(files.keystoreFile)) return files;

  const openssl = await ensureTool('openssl');
  if (!openssl) throw new Error('openssl is needed to make the certificates of the SASL_SSL Kafka cluster; tools/setup/50-openssl.sh provides it');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const work = path.join(dir, `making-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { mode: 0o700 });
  const at = (name: string) => path.join(work, name);
  const run = async (...args: string[]) => {
    try {
      await promisify(execFile)(openssl, args, { cwd: work });
    } catch (error) {
      const failure = error as Error & { stderr?: string };
      throw new Error(`openssl ${args[0]} failed making the Kafka certificates: ${failure.stderr?.trim() || failure.message}`);
    }
  };
  try {
    await writeFile(at('openssl.cnf'), OPENSSL_CONFIG);
    const newKey = (file: string) => run('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', at(file));
    await newKey('ca.key');
    await run('req', '-x509', '-new', '-config', at('openssl.cnf'), '-extensions', 'ca_ext', '-key', at('ca.key'), '-subj', '/CN=Summa local Kafka CA', '-days', '3650', '-out', at('ca.pem'));
    // genpkey writes PKCS#8, the only private key form Kafka's PEM keystore reads.
    await newKey('node.key');
    await run('req', '-new', '-config', at('openssl.cnf'), '-key', at('node.key'), '-subj', '/CN=localhost', '-out', at('node.csr'));
    await run(
      'x509', '-req', '-in', at('node.csr'), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-set_serial', `0x${randomBytes(12).toString('hex')}`,
      '-days', '3650', '-extfile', at('openssl.cnf'), '-extensions', 'node_ext', '-out', at('node.pem'),
    );
    const keystore = `${await readFile(at('node.key'), 'utf8')}${await readFile(at('node.pem'), 'utf8')}`;
    await writeFile(files.keystoreFile, keystore, { mode: 0o600 });
    await chmod(files.keystoreFile, 0o600);
    await writeFile(files.caFile, await readFile(at('ca.pem')));
  } finally {
    // The CA's key is not kept: nothing is ever signed with it again.
    await rm(work, { recursive: true, force: true });
  }
  return files;
}
