// The console page and the endpoints it reads: the page itself (plain files beside this module,
// copied into dist/ by the build), a Server-Sent Events stream of live samples, the Add form's
// forward to the calculator, a request's trace, the topic browser and the parked dead letters.
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Pool } from '../../platform/db/pool.ts';
import { invalidArgument } from '../../platform/errors.ts';
import { parseRequestId } from '../../platform/request-id.ts';
import { previewBytes } from '../../cli/payload-preview.ts';
import { formatRecordId, listRejectedRecords } from '../rejected-records.ts';
import { forwardAdd } from './calculator-proxy.ts';
import type { PipelineSampler } from './pipeline-sampler.ts';
import { traceRequest } from './request-trace.ts';
import { MAX_RECORDS, type TopicBrowser } from './topic-browser.ts';

export interface ConsoleDependencies {
  pool: Pool;
  sampler: PipelineSampler;
  browser: TopicBrowser;
  calculatorUrl: string | undefined;
}

const STATIC_FILES = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
} as const;

// The page loads nothing from elsewhere; the policy makes the browser hold it to that.
const CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'";

export function registerConsoleRoutes(app: FastifyInstance, deps: ConsoleDependencies): void {
  for (const [route, { file, type }] of Object.entries(STATIC_FILES)) {
    // Read once: the files are small and ship with the service.
    const content = readFileSync(new URL(`./static/${file}`, import.meta.url));
    app.get(route, async (_request, reply) =>
      reply.header('content-type', type).header('cache-control', 'no-cache').header('content-security-policy', CONTENT_SECURITY_POLICY).send(content),
    );
  }

  app.get('/console/events', (request, reply) => {
    reply.hijack();
    const response = reply.raw;
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // nginx buffers proxied responses unless told not to.
      'x-accel-buffering': 'no',
    });
    const send = (event: string, data: unknown) => response.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    send('history', deps.sampler.recent());
    const unsubscribe = deps.sampler.subscribe(
      (sample) => send('sample', sample),
      () => response.end(),
    );
    request.raw.once('close', unsubscribe);
  });

  app.post('/console/sums', async (request, reply) => {
    const answer = await forwardAdd(deps.calculatorUrl, request.body, request.headers.authorization);
    return reply.status(answer.status).send(answer.body);
  });

  app.get<{ Params: { requestId: string } }>('/console/requests/:requestId', async (request) =>
    traceRequest(deps.pool, parseRequestId(request.params.requestId)),
  );

  app.get('/console/topics', async () => deps.browser.topics());

  app.get<{ Params: { topic: string; partition: string }; Querystring: { limit?: string } }>(
    '/console/topics/:topic/partitions/:partition/records',
    async (request) => {
      const partition = wholeNumber(request.params.partition, 'partition', 0, 2 ** 31 - 1);
      const limit = request.query.limit === undefined ? 20 : wholeNumber(request.query.limit, 'limit', 1, MAX_RECORDS);
      return { topic: request.params.topic, partition, records: await deps.browser.latestRecords(request.params.topic, partition, limit) };
    },
  );

  app.get('/console/dead-letters', async () => {
    const listing = await listRejectedRecords(deps.pool, { limit: 50, includeReplayed: true });
    return {
      parked: listing.parked,
      replayed: listing.replayed,
      records: listing.records.map((record) => ({
        id: formatRecordId(record),
        reason: record.reason,
        key: record.key,
        payload: previewBytes(record.payload),
        rejectedAt: record.rejectedAt.toISOString(),
        replayedAt: record.replayedAt?.toISOString() ?? null,
      })),
    };
  });
}

function wholeNumber(text: string, name: string, min: number, max: number): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw invalidArgument(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}
