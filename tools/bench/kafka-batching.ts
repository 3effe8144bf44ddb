// Records per Kafka request on both sides of the broker, from the services' own /metrics:
// the relay's produce requests (summa_relay_produce_requests_total, summa_relay_records_produced_total)
// and totals' fetch responses (summa_totals_fetches_total, summa_totals_records_fetched_total) and
// offset commits (summa_totals_offset_commits_total).
// Read before and after a load window; the ratios of the differences are the window's batching.

export interface KafkaBatchingCounts {
  produceRequests: number;
  recordsProduced: number;
  fetches: number;
  recordsFetched: number;
  offsetCommits: number;
}

export interface KafkaBatchingFigures {
  records_per_produce_request: number;
  records_per_fetch: number;
  produce_requests: number;
  records_produced: number;
  fetches: number;
  records_fetched: number;
  offset_commits: number;
}

/** Reads the four counters from the relay's and totals' /metrics (base URLs, e.g. http://127.0.0.1:8081). */
export async function readKafkaBatching(relayUrl: string, totalsUrl: string): Promise<KafkaBatchingCounts> {
  const [relay, totals] = await Promise.all([scrape(relayUrl), scrape(totalsUrl)]);
  return {
    produceRequests: counter(relay, 'summa_relay_produce_requests_total'),
    recordsProduced: counter(relay, 'summa_relay_records_produced_total'),
    fetches: counter(totals, 'summa_totals_fetches_total'),
    recordsFetched: counter(totals, 'summa_totals_records_fetched_total'),
    offsetCommits: counter(totals, 'summa_totals_offset_commits_total'),
  };
}

/** The window's figures between two readings. */
export function kafkaBatchingBetween(before: KafkaBatchingCounts, after: KafkaBatchingCounts): KafkaBatchingFigures {
  const produceRequests = after.produceRequests - before.produceRequests;
  const recordsProduced = after.recordsProduced - before.recordsProduced;
  const fetches = after.fetches - before.fetches;
  const recordsFetched = after.recordsFetched - before.recordsFetched;
  const ratio = (records: number, requests: number) => (requests > 0 ? Number((records / requests).toFixed(2)) : 0);
  return {
    records_per_produce_request: ratio(recordsProduced, produceRequests),
    records_per_fetch: ratio(recordsFetched, fetches),
    produce_requests: produceRequests,
    records_produced: recordsProduced,
    fetches,
    records_fetched: recordsFetched,
    offset_commits: after.offsetCommits - before.offsetCommits,
  };
}

async function scrape(baseUrl: string): Promise<string> {
  const response = await fetch(`${baseUrl}/metrics`);
  if (!response.ok) throw new Error(`GET ${baseUrl}/metrics answered ${response.status}`);
  return response.text();
}

/**
 * A counter's value in a Prometheus text exposition, summed over its series (the services label
 * every series with service="..."); 0 when absent.
 */
function counter(exposition: string, name: string): number {
  let sum = 0;
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(`${name} `) && !line.startsWith(`${name}{`)) continue;
    sum += Number(line.slice(line.lastIndexOf('}') + 1 || name.length).trim().split(' ')[0]);
  }
  return sum;
}
