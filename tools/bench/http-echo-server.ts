// The HTTP pair's ceiling: a bare Fastify server that answers POST /v1/sums with the calculator's
// response shape, in memory, checking nothing beyond Fastify's own JSON parsing. What the calculator
// does on top (validation, idempotency, the PostgreSQL transaction, tracing) is what the pair
// measures. Prints its port on stdout once it listens.
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';

interface SumBody {
  num1?: unknown;
  num2?: unknown;
  requestId?: unknown;
}

const app = Fastify({ logger: false });
app.post('/v1/sums', async (request, reply) => {
  const body = (request.body ?? {}) as SumBody;
  const requestId = typeof body.requestId === 'string' ? body.requestId : randomUUID();
  return reply.status(201).send({ sum: String(Number(body.num1) + Number(body.num2)), requestId, replayed: false });
});

await app.listen({ host: '127.0.0.1', port: Number(process.env.ECHO_PORT ?? '0') });
const address = app.server.address();
console.log(`listening ${typeof address === 'object' && address ? address.port : address}`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => void app.close().then(() => process.exit(0)));
}
