import { Gauge, type Registry } from 'prom-client';
import type pg from 'pg';
import type { Logger } from '../platform/logger.ts';
import { formatWalBytes, gradeCaptureSlot, readCaptureSlot, type CaptureSlotLimits, type CaptureSlotReading } from './capture-slot.ts';

// The calculator owns the outbox, so under change data capture it also watches the slot the outbox
// is read through: gauges for Prometheus, and a log line when the slot crosses a limit (and when it
// is back under). It does not touch readiness: taking the calculators out of service would stop the
// Adds over a disk that is not full yet, and a capture that is down loses nothing.

/** Often enough for a dashboard, rare enough to cost nothing: one catalog query per calculator. */
export const CAPTURE_SLOT_SAMPLE_MS = 5_000;

export class CaptureSlotMonitor {
  private readonly retained: Gauge;
  private readonly unconfirmed: Gauge;
  private readonly active: Gauge;
  private timer: NodeJS.Timeout | undefined;
  private sampling: Promise<void> | undefined;
  /** The warnings of the last sample, to log only when they change. */
  private warnings = '';

  constructor(
    private readonly pool: Pick<pg.Pool, 'query'>,
    private readonly limits: CaptureSlotLimits,
    registry: Registry,
    private readonly logger: Logger,
    private readonly sampleMs = CAPTURE_SLOT_SAMPLE_MS,
  ) {
    this.retained = new Gauge({
      name: 'summa_outbox_capture_slot_retained_bytes',
      help: "WAL PostgreSQL keeps on disk for the outbox's replication slot (current LSN - restart_lsn); 0 when the slot does not exist.",
      registers: [registry],
    });
    this.unconfirmed = new Gauge({
      name: 'summa_outbox_capture_slot_unconfirmed_bytes',
      help: "WAL written since the last LSN the connector confirmed (current LSN - confirmed_flush_lsn); 0 when the slot does not exist.",
      registers: [registry],
    });
    this.active = new Gauge({
      name: 'summa_outbox_capture_slot_active',
      help: "1 while a client (the Debezium connector) streams from the outbox's replication slot, else 0.",
      registers: [registry],
    });
  }

  start(): void {
    const tick = () => {
      this.sampling = this.sample().then(() => undefined).finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.sampleMs).unref();
      });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.sampling;
  }

  /** One reading into the gauges, and the log when the grade changed. Never throws. */
  async sample(): Promise<CaptureSlotReading | undefined> {
    let reading: CaptureSlotReading;
    try {
      reading = await readCaptureSlot(this.pool, this.limits.slotName);
    } catch (error) {
      // PostgreSQL unreachable: readiness and the pool's own errors say so; the gauges keep their last value.
      this.logger.debug({ err: error }, 'cannot read the capture slot');
      return undefined;
    }
    this.retained.set(reading.exists ? reading.retainedBytes : 0);
    this.unconfirmed.set(reading.exists ? (reading.unconfirmedBytes ?? 0) : 0);
    this.active.set(reading.exists && reading.active ? 1 : 0);
    const grade = gradeCaptureSlot(reading, this.limits);
    const warnings = grade.warnings.join('; ');
    if (warnings !== this.warnings) {
      const fields = { slot: this.limits.slotName, ...(reading.exists ? { active: reading.active, retainedBytes: reading.retainedBytes, inactiveSeconds: reading.inactiveSeconds } : { exists: false }) };
      if (warnings) this.logger.warn(fields, `replication slot: ${warnings}; it holds WAL on disk until the connector reads it (docs/cdc.md)`);
      else this.logger.info(fields, `replication slot ${this.limits.slotName} back within its limits (${reading.exists ? formatWalBytes(reading.retainedBytes) : '?'} retained)`);
      this.warnings = warnings;
    }
    return reading;
  }
}
