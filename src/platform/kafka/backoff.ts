/** Exponential backoff: 100ms, 200ms, 400ms, ... capped at maxMs. */
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
