import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envCaptureSlotLimits, gradeCaptureSlot, type CaptureSlotReading } from '../../src/outbox/capture-slot.ts';
import { readCalculatorConfig } from '../../src/calculator/config.ts';

const limits = { slotName: 'summa_outbox', maxRetainedBytes: 100 * 1024 * 1024, maxInactiveSeconds: 300 };
const slot = (over: Partial<Extract<CaptureSlotReading, { exists: true }>> = {}): CaptureSlotReading => ({
  exists: true,
  active: true,
  retainedBytes: 4096,
  unconfirmedBytes: 1024,
  inactiveSeconds: null,
  walStatus: 'reserved',
  ...over,
});

describe('the capture slot: grading', () => {
  it('is ok while the connector streams from it and it holds little', () => {
    const grade = gradeCaptureSlot(slot(), limits);
    assert.equal(grade.level, 'ok');
    assert.deepEqual(grade.warnings, []);
    assert.equal(grade.detail, 'slot summa_outbox: active, retains 4.0 KiB of WAL, 1.0 KiB not yet confirmed by the connector');
  });

  it('is ok while inactive for less than the limit (a connector restart)', () => {
    const grade = gradeCaptureSlot(slot({ active: false, inactiveSeconds: 90 }), limits);
    assert.equal(grade.level, 'ok');
    assert.match(grade.detail, /^slot summa_outbox: INACTIVE for 90 s, /);
  });

  it('warns when inactive for longer than the limit, naming the setting', () => {
    const grade = gradeCaptureSlot(slot({ active: false, inactiveSeconds: 301 }), limits);
    assert.equal(grade.level, 'warning');
    assert.deepEqual(grade.warnings, ['slot summa_outbox inactive for more than 5 min (CAPTURE_SLOT_MAX_INACTIVE_SECONDS)']);
  });

  it('warns when it retains more WAL than the limit, active or not', () => {
    const grade = gradeCaptureSlot(slot({ retainedBytes: limits.maxRetainedBytes + 1 }), limits);
    assert.equal(grade.level, 'warning');
    assert.deepEqual(grade.warnings, ['slot summa_outbox retains more than 100.0 MiB of WAL (CAPTURE_SLOT_MAX_RETAINED_MB)']);
    assert.equal(gradeCaptureSlot(slot({ retainedBytes: limits.maxRetainedBytes }), limits).level, 'ok');
  });

  it('gives both reasons when both hold, and an inactive slot of unknown age only for its WAL', () => {
    assert.equal(gradeCaptureSlot(slot({ active: false, inactiveSeconds: 3600, retainedBytes: 2e9 }), limits).warnings.length, 2);
    const unknownAge = gradeCaptureSlot(slot({ active: false, inactiveSeconds: null }), limits);
    assert.equal(unknownAge.level, 'ok');
    assert.match(unknownAge.detail, /^slot summa_outbox: INACTIVE, retains/);
  });

  it('warns on a missing slot, a slot that lost WAL, and one that cannot be read', () => {
    assert.deepEqual(gradeCaptureSlot({ exists: false }, limits).warnings, ['replication slot summa_outbox does not exist']);
    assert.match(gradeCaptureSlot(slot({ walStatus: 'lost', retainedBytes: 0 }), limits).warnings[0]!, /lost WAL/);
    assert.equal(gradeCaptureSlot({ error: 'connection refused' }, limits).level, 'warning');
  });
});

describe('the capture slot: settings', () => {
  it('defaults to slot summa_outbox, 1 GiB and 5 minutes', () => {
    assert.deepEqual(envCaptureSlotLimits({}), { slotName: 'summa_outbox', maxRetainedBytes: 1024 ** 3, maxInactiveSeconds: 300 });
    assert.deepEqual(envCaptureSlotLimits({ CAPTURE_SLOT_NAME: 'other', CAPTURE_SLOT_MAX_RETAINED_MB: '10', CAPTURE_SLOT_MAX_INACTIVE_SECONDS: '60' }), {
      slotName: 'other',
      maxRetainedBytes: 10 * 1024 * 1024,
      maxInactiveSeconds: 60,
    });
  });

  it('rejects bad values with the variable named', () => {
    assert.throws(() => envCaptureSlotLimits({ CAPTURE_SLOT_MAX_RETAINED_MB: '0' }), /CAPTURE_SLOT_MAX_RETAINED_MB must be between 1 and/);
    assert.throws(() => envCaptureSlotLimits({ CAPTURE_SLOT_MAX_RETAINED_MB: '1GB' }), /CAPTURE_SLOT_MAX_RETAINED_MB must be a whole number/);
    assert.throws(() => envCaptureSlotLimits({ CAPTURE_SLOT_MAX_INACTIVE_SECONDS: '-5' }), /CAPTURE_SLOT_MAX_INACTIVE_SECONDS must be a whole number/);
    assert.throws(() => envCaptureSlotLimits({ CAPTURE_SLOT_NAME: 'Summa-Outbox' }), /CAPTURE_SLOT_NAME must be a replication slot name/);
  });

  it('are read by the calculator only under change data capture', () => {
    const base = { DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/summa', KAFKA_BROKERS: '127.0.0.1:9092' };
    assert.equal(readCalculatorConfig({ ...base, CAPTURE_SLOT_MAX_RETAINED_MB: 'x' }).captureSlot, undefined);
    assert.equal(readCalculatorConfig({ ...base, RELAY_MODE: 'debezium' }).captureSlot?.slotName, 'summa_outbox');
    assert.throws(() => readCalculatorConfig({ ...base, RELAY_MODE: 'debezium', CAPTURE_SLOT_MAX_RETAINED_MB: 'x' }), /CAPTURE_SLOT_MAX_RETAINED_MB/);
  });
});
