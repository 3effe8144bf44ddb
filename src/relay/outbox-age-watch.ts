import type { Logger } from '../platform/logger.ts';

/**
 * The share of the dedup window an outbox event may wait before the relay warns. The totals
 * service recognises a duplicate only while its applied event is kept (DEDUP_WINDOW_SECONDS); an
 * event that waits in the outbox longer than that reaches it too old and is quarantined instead of
 * applied. Half the window leaves the other half to bring the relay (or Kafka) back. The alert
 * rule OutboxNearDedupWindow (deploy/compose/alerts.yml) uses the same fraction.
 */
export const OUTBOX_AGE_WARNING_FRACTION = 0.5;

/** The warning for an oldest unpublished event of this age, or undefined while it is young enough. */
export function outboxAgeWarning(oldestAgeSeconds: number, dedupWindowSeconds: number, fraction = OUTBOX_AGE_WARNING_FRACTION): string | undefined {
  if (oldestAgeSeconds <= dedupWindowSeconds * fraction) return undefined;
  return (
    `the oldest outbox event has waited ${Math.round(oldestAgeSeconds)} s, more than ${Math.round(fraction * 100)}% of the dedup window ` +
    `(DEDUP_WINDOW_SECONDS=${dedupWindowSeconds}): past the window it is quarantined by the totals service instead of applied`
  );
}

/**
 * Reads the outbox's oldest age every `intervalMs` and holds the warning it calls for, for
 * /readyz; logs when the warning appears and when it clears, not at every reading. A reading that
 * fails keeps the last warning: the database being away says nothing about the outbox's age.
 */
export class OutboxAgeWatch {
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;
  private current: string | undefined;
  private stopped = false;

  constructor(
    private readonly readOldestAgeSeconds: () => Promise<number>,
    private readonly dedupWindowSeconds: number,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  /** Between 1 s and 15 s: a twentieth of the window, so that a short window (in tests) is watched closely enough. */
  static intervalFor(dedupWindowSeconds: number): number {
    return Math.min(15_000, Math.max(1_000, (dedupWindowSeconds * 1000) / 20));
  }

  start(): void {
    const loop = async () => {
      this.reading = this.check();
      await this.reading;
      if (!this.stopped) this.timer = setTimeout(loop, this.intervalMs);
    };
    void loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.reading;
  }

  warnings(): string[] {
    return this.current === undefined ? [] : [this.current];
  }

  async check(): Promise<void> {
    let age: number;
    try {
      age = await this.readOldestAgeSeconds();
    } catch (error) {
      this.logger.debug({ err: error }, 'reading the outbox age failed; will try again');
      return;
    }
    const warning = outboxAgeWarning(age, this.dedupWindowSeconds);
    if (warning !== undefined && this.current === undefined) this.logger.warn({ oldestAgeSeconds: age, dedupWindowSeconds: this.dedupWindowSeconds }, warning);
    if (warning === undefined && this.current !== undefined) this.logger.info({ oldestAgeSeconds: age }, 'the oldest outbox event is again well within the dedup window');
    this.current = warning;
  }
}
