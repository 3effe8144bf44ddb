/**
 * Exponential backoff: the pause before retry number `attempt` (0 for the first retry) is minMs,
 * 2·minMs, 4·minMs, ... capped at maxMs. Every retry loop in the services takes its pauses from here.
 */
export function backoffDelay(attempt: number, minMs = 100, maxMs = 5_000): number {
  return Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
}

/** Resolves after `ms`, or as soon as `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
