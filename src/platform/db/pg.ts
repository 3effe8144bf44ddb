import type Pg from 'pg';

/**
 * The `pg` library, for every service module that uses it as a value (types come from 'pg' itself).
 *
 * At import pg asks whether it runs in a Cloudflare Worker; where `navigator` is not defined (Node
 * 20) it does so by building a `Response`, and Node's first touch of `Response` loads its whole
 * fetch implementation (undici): 12–13 MB of resident memory in each service, which never uses it.
 * `Response` is hidden only while pg's modules run, so pg takes Node's sockets as it would anyway.
 * Every value import of 'pg' must come through here: the first import of pg decides, and a
 * unit test (test/unit/service-modules-memory.spec.ts) checks that no service loads undici.
 */
const response = Object.getOwnPropertyDescriptor(globalThis, 'Response');
let pg: typeof Pg;
try {
  Object.defineProperty(globalThis, 'Response', { value: undefined, configurable: true, writable: true });
  pg = (await import('pg')).default;
} finally {
  if (response) Object.defineProperty(globalThis, 'Response', response);
  else delete (globalThis as { Response?: unknown }).Response;
}

export default pg;
