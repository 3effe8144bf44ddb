import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs on stdout, one line per event; the service name is on every line. */
export function createLogger(service: string, env: Record<string, string | undefined> = process.env): Logger {
  return pino({
    name: service,
    level: env.LOG_LEVEL ?? 'info',
    base: { service, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
