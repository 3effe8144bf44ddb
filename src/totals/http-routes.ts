import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SummaError } from '../platform/errors.ts';
import { parseRequestId } from '../platform/request-id.ts';
import { parseTotalQuery } from './total-query.ts';
import type { TotalReader, TotalRead } from './total-reads.ts';
import type { TotalsStore } from './totals-store.ts';

/** Which server a total was read from: `replica` or `primary`. */
export const READ_SOURCE_HEADER = 'summa-read-source';
/** How far behind the primary the replica was at the read, when it was read there. */
export const REPLICA_LAG_MS_HEADER = 'summa-replica-lag-ms';
export const REPLICA_LAG_BYTES_HEADER = 'summa-replica-lag-bytes';

export function registerTotalsRoutes(app: FastifyInstance, store: TotalsStore, reader: TotalReader): void {
  const total = async (request: FastifyRequest<{ Querystring: Record<string, unknown> }>, reply: FastifyReply) => {
    const query = parseTotalQuery(request.query);
    // A caller that hangs up while waiting for ?after= stops the polling it asked for.
    const hungUp = new AbortController();
    reply.raw.once('close', () => hungUp.abort());
    const read = await reader.read(query, hungUp.signal);
    void reply.headers(readHeaders(read));
    return read.snapshot;
  };
  app.get('/total', total);
  app.get('/summation', total);

  app.get<{ Params: { requestId: string } }>('/sums/:requestId', async (request) => {
    const requestId = parseRequestId(request.params.requestId);
    const applied = await store.findByRequestId(requestId);
    if (!applied) {
      throw new SummaError('NOT_FOUND', `no sum with request id ${JSON.stringify(requestId)} has been applied to the total`);
    }
    return {
      requestId: applied.requestId,
      applied: true,
      sum: applied.sum,
      eventId: applied.eventId,
      acceptedAt: applied.acceptedAt.toISOString(),
      appliedAt: applied.appliedAt.toISOString(),
    };
  });
}

function readHeaders(read: TotalRead): Record<string, string> {
  const headers: Record<string, string> = { [READ_SOURCE_HEADER]: read.source };
  if (read.replicaLag?.seconds != null) headers[REPLICA_LAG_MS_HEADER] = String(Math.round(read.replicaLag.seconds * 1000));
  if (read.replicaLag?.bytes != null) headers[REPLICA_LAG_BYTES_HEADER] = String(read.replicaLag.bytes);
  return headers;
}
