import type { FastifyInstance } from 'fastify';
import { SummaError } from '../platform/errors.ts';
import { parseRequestId } from '../platform/request-id.ts';
import type { TotalsStore } from './totals-store.ts';

export function registerTotalsRoutes(app: FastifyInstance, store: TotalsStore): void {
  const total = async () => store.readTotal();
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
