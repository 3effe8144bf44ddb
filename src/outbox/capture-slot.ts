import type pg from 'pg';
import { envInteger, envString, ConfigError, type Env } from '../platform/config.ts';

// The replication slot change data capture reads the outbox through (RELAY_MODE=debezium). While
// the connector is down or behind, PostgreSQL keeps every WAL segment from the slot's restart LSN
// on, for all the database's writes, not only the outbox's: a connector gone for a weekend can fill
// the disk. This reads what the slot holds and grades it, for the calculator's metrics and log and
// for `summa status`.

/** The slot the Debezium connector is told to use (tools/local-stack/kafka-connect.ts), unless told another. */
export const OUTBOX_CAPTURE_SLOT = 'summa_outbox';

export type CaptureSlotReading =
  | { exists: false }
  | {
      exists: true;
      active: boolean;
      /** WAL kept on disk for the slot: from its restart LSN to the current LSN. */
      retainedBytes: number;
      /** WAL written since the last LSN the connector confirmed; null before it confirmed any. */
      unconfirmedBytes: number | null;
      /** How long no client has streamed from it (PostgreSQL 17 on); null while active or when unknown. */
      inactiveSeconds: number | null;
      /** pg_replication_slots.wal_status: reserved, extended, unreserved or lost. */
      walStatus: string | null;
    };

// inactive_since is read through to_jsonb so that the same statement runs on PostgreSQL 16, which
// lacks the column (it is then null and the time down is not known).
const SLOT_SQL = `
SELECT s.active,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::float8 AS retained_bytes,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::float8 AS unconfirmed_bytes,
       extract(epoch FROM now() - (to_jsonb(s) ->> 'inactive_since')::timestamptz)::float8 AS inactive_seconds,
       s.wal_status
FROM pg_replication_slots s WHERE s.slot_name = $1`;

/** One cheap catalog query on the primary (pg_current_wal_lsn() fails on a standby). */
export async function readCaptureSlot(db: Pick<pg.ClientBase, 'query'>, slotName: string): Promise<CaptureSlotReading> {
  const row = (
    await db.query<{ active: boolean; retained_bytes: number | null; unconfirmed_bytes: number | null; inactive_seconds: number | null; wal_status: string | null }>(
      SLOT_SQL,
      [slotName],
    )
  ).rows[0];
  if (!row) return { exists: false };
  return {
    exists: true,
    active: row.active,
    // A slot whose WAL was removed (wal_status lost) has no restart LSN: it holds nothing any more.
    retainedBytes: Math.max(0, row.retained_bytes ?? 0),
    unconfirmedBytes: row.unconfirmed_bytes === null ? null : Math.max(0, row.unconfirmed_bytes),
    inactiveSeconds: row.active || row.inactive_seconds === null ? null : Math.max(0, row.inactive_seconds),
    walStatus: row.wal_status,
  };
}

export interface CaptureSlotLimits {
  readonly slotName: string;
  /** More WAL held than this is a warning. */
  readonly maxRetainedBytes: number;
  /** A slot nobody streams from for longer than this is a warning. */
  readonly maxInactiveSeconds: number;
}

const MIB = 1024 * 1024;

/**
 * CAPTURE_SLOT_NAME (default summa_outbox), CAPTURE_SLOT_MAX_RETAINED_MB (default 1024) and
 * CAPTURE_SLOT_MAX_INACTIVE_SECONDS (default 300). The defaults: a connector restart or a rebalance
 * takes well under five minutes, and a gigabyte of WAL is minutes of the calculator's heaviest load
 * yet far from filling a disk sized for the database.
 */
export function envCaptureSlotLimits(env: Env): CaptureSlotLimits {
  const slotName = envString(env, 'CAPTURE_SLOT_NAME', OUTBOX_CAPTURE_SLOT);
  // Replication slot names: lower-case letters, digits and underscores, at most 63 (NAMEDATALEN - 1).
  if (!/^[a-z0-9_]{1,63}$/.test(slotName)) {
    throw new ConfigError(`CAPTURE_SLOT_NAME must be a replication slot name (lower-case letters, digits, _; at most 63), not ${JSON.stringify(slotName)}`);
  }
  return Object.freeze({
    slotName,
    maxRetainedBytes: envInteger(env, 'CAPTURE_SLOT_MAX_RETAINED_MB', 1024, { min: 1, max: 1024 * 1024 }) * MIB,
    maxInactiveSeconds: envInteger(env, 'CAPTURE_SLOT_MAX_INACTIVE_SECONDS', 300, { min: 1, max: 30 * 24 * 3600 }),
  });
}

export interface CaptureSlotGrade {
  level: 'ok' | 'warning';
  /** The line a person reads: state, WAL held, time down, and why it is a warning. */
  detail: string;
  /** Each reason it is a warning (empty when ok). */
  warnings: string[];
}

export function formatWalBytes(bytes: number | null): string {
  if (bytes === null) return '? bytes';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MIB) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 * MIB) return `${(bytes / MIB).toFixed(1)} MiB`;
  return `${(bytes / 1024 / MIB).toFixed(2)} GiB`;
}

export function formatDuration(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/**
 * A warning, never a failure: the Adds still commit and nothing is lost while the slot holds WAL;
 * what is at stake is the disk, which an operator has time to act on. A slot that does not exist
 * while capture is meant to run is a warning too (nothing is captured, and the connector's own
 * state says why).
 */
export function gradeCaptureSlot(reading: CaptureSlotReading | { error: string }, limits: CaptureSlotLimits): CaptureSlotGrade {
  const name = limits.slotName;
  if ('error' in reading) return { level: 'warning', detail: `slot ${name}: cannot read it: ${reading.error}`, warnings: [`cannot read slot ${name}: ${reading.error}`] };
  if (!reading.exists) return { level: 'warning', detail: `slot ${name}: does not exist (capture has not started)`, warnings: [`replication slot ${name} does not exist`] };
  const warnings: string[] = [];
  const parts = [`slot ${name}: ${reading.active ? 'active' : 'INACTIVE'}`];
  if (!reading.active) parts[0] += reading.inactiveSeconds === null ? '' : ` for ${formatDuration(reading.inactiveSeconds)}`;
  parts.push(`retains ${formatWalBytes(reading.retainedBytes)} of WAL`);
  if (reading.unconfirmedBytes !== null) parts.push(`${formatWalBytes(reading.unconfirmedBytes)} not yet confirmed by the connector`);
  if (reading.walStatus === 'lost') warnings.push(`slot ${name} lost WAL it needed (wal_status lost): capture cannot resume from it`);
  if (!reading.active && reading.inactiveSeconds !== null && reading.inactiveSeconds > limits.maxInactiveSeconds) {
    warnings.push(`slot ${name} inactive for more than ${formatDuration(limits.maxInactiveSeconds)} (CAPTURE_SLOT_MAX_INACTIVE_SECONDS)`);
  }
  if (reading.retainedBytes > limits.maxRetainedBytes) {
    warnings.push(`slot ${name} retains more than ${formatWalBytes(limits.maxRetainedBytes)} of WAL (CAPTURE_SLOT_MAX_RETAINED_MB)`);
  }
  const detail = parts.join(', ') + (warnings.length > 0 ? ` — WARNING: ${warnings.join('; ')}` : '');
  return { level: warnings.length > 0 ? 'warning' : 'ok', detail, warnings };
}
