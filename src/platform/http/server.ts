import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { SummaError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { TlsIdentity } from '../security.ts';
import { registerHttpMetrics } from './http-metrics.ts';
import { httpStatusOf } from './status.ts';

export interface HttpServerOptions {
  logger: Logger;
  registry: Registry;
  /** /readyz answers 200 only while this returns true. */
  isReady: () => boolean;
  /**
   * Why the service is not ready although isReady() allows it (a consumer that stopped applying,
   * say): /readyz answers 503 with it in `reason`. Undefined while there is nothing.
   */
  notReadyReason?: () => string | undefined;
  /**
   * What needs an operator soon without making the service unready (an outbox event nearing the
   * dedup window, say): /readyz carries them in `warnings` and still answers 200.
   */
  warnings?: () => readonly string[];
  bodyLimitBytes?: number;
  /** HTTPS instead of plain HTTP when given. */
  tls?: TlsIdentity;
}

export interface ErrorBody {
  /** `requestId`: the request the failure is about, when it got that far (retry under it). */
  error: { code: string; message: string; requestId?: string };
}

/**
 * A Fastify server with the endpoints every Summa service has (/healthz, /readyz, /metrics) and
 * one error format: `{"error": {"code", "message"}}` with the status that fits the code.
 */
export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const bodyLimit = options.bodyLimitBytes ?? 16 * 1024;
  // Room for any request id in /sums/:requestId, percent-encoded (128 characters of up to 4 UTF-8 bytes, 3 characters each).
  const routerOptions = { maxParamLength: 128 * 4 * 3 };
  // Both kinds of server have the same Fastify surface; the HTTPS one only differs in its listener.
  const app = options.tls
    ? (Fastify({ logger: false, bodyLimit, routerOptions, https: { cert: options.tls.cert, key: options.tls.key } }) as unknown as FastifyInstance)
    : Fastify({ logger: false, bodyLimit, routerOptions });
  registerHttpMetrics(app, options.registry);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof SummaError) {
      if (error.code === 'INTERNAL' || error.code === 'UNAVAILABLE') {
        options.logger.warn({ err: error.cause ?? error, route: request.routeOptions.url }, error.message);
      }
      return reply.status(httpStatusOf(error)).send(errorBody(error.code, error.message, error.requestId));
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      const code = status === 413 ? 'PAYLOAD_TOO_LARGE' : status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'INVALID_ARGUMENT';
      return reply.status(status).send(errorBody(code, error.message));
    }
    options.logger.error({ err: error, route: request.routeOptions.url }, 'unhandled error');
    return reply.status(500).send(errorBody('INTERNAL', 'internal error'));
  });

  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send(errorBody('NOT_FOUND', `no route for ${request.method} ${request.url.split('?')[0]}`)),
  );

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (!options.isReady()) return reply.status(503).send({ status: 'not ready' });
    const reason = options.notReadyReason?.();
    const warnings = options.warnings?.() ?? [];
    // Left out while there is none, so that the usual answer stays {"status":"ready"}.
    const withWarnings = warnings.length > 0 ? { warnings } : {};
    return reason === undefined ? { status: 'ready', ...withWarnings } : reply.status(503).send({ status: 'not ready', reason, ...withWarnings });
  });
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', options.registry.contentType);
    return options.registry.metrics();
  });
  return app;
}

export function errorBody(code: string, message: string, requestId?: string): ErrorBody {
  return { error: requestId === undefined ? { code, message } : { code, message, requestId } };
}
