import { levels, pino, type Logger } from 'pino';
import { activeTraceIds } from './tracing/tracing.ts';

export type { Logger };

/**
 * JSON logs on stdout, one line per event; the service name is on every line, and lines written
 * inside a span carry its trace_id and span_id.
 */
export function createLogger(service: string, env: Record<string, string | undefined> = process.env): Logger {
  const requested = env.LOG_LEVEL?.trim().toLowerCase() || 'info';
  const known = requested === 'silent' || requested in levels.values;
  const logger = pino({
    name: service,
    level: known ? requested : 'info',
    base: { service, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Secrets never reach the logs, even if a request, its headers or a config object is logged.
    redact: {
      paths: [
        'authorization',
        'headers.authorization',
        'req.headers.authorization',
        'request.headers.authorization',
        'metadata.authorization',
        'token',
        'writeToken',
        'password',
        'databaseUrl',
        'config.databaseUrl',
        'config.writeToken',
        'config.tls',
        'tls',
      ],
      censor: '[redacted]',
    },
    mixin: activeTraceIds,
  });
  if (!known) logger.warn({ LOG_LEVEL: env.LOG_LEVEL }, `unknown LOG_LEVEL; using info (one of: ${Object.keys(levels.values).join(', ')}, silent)`);
  return logger;
}
