import { Counter, Histogram, type Registry } from 'prom-client';

export interface CalculatorMetrics {
  requests: Counter<'outcome'>;
  batchSize: Histogram;
}

export function createCalculatorMetrics(registry: Registry): CalculatorMetrics {
  return {
    requests: new Counter({
      name: 'summa_calculator_requests_total',
      help: 'Add requests answered, by outcome (accepted, replayed, conflict).',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'summa_calculator_batch_size',
      help: 'Requests written per group-commit statement.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers: [registry],
    }),
  };
}
