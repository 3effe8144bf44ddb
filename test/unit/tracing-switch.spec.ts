import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { trace } from '@opentelemetry/api';
import { initTracing, tracingRequested } from '../../src/platform/tracing/sdk.ts';

describe('the tracing switch', () => {
  it('is off without OTEL variables, on with an OTLP endpoint or exporter, and refuses an unknown exporter', () => {
    assert.equal(tracingRequested({}), false);
    assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), true);
    assert.equal(tracingRequested({ OTEL_TRACES_EXPORTER: 'otlp' }), true);
    assert.equal(tracingRequested({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), false);
    assert.equal(tracingRequested({ OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' }), false);
    assert.throws(() => tracingRequested({ OTEL_TRACES_EXPORTER: 'zipkin' }), /unsupported exporter "zipkin"/);
  });

  it('leaves spans as no-ops when off, and loads the SDK and records spans when on', async () => {
    const off = await initTracing('test', {});
    assert.equal(trace.getTracer('test').startSpan('off').isRecording(), false);
    await off.shutdown();

    // Nothing listens on port 1: the span is never ended, so nothing is sent there.
    const on = await initTracing('test', { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1' });
    try {
      assert.equal(trace.getTracer('test').startSpan('on').isRecording(), true);
    } finally {
      await on.shutdown();
    }
    assert.equal(trace.getTracer('test').startSpan('after').isRecording(), false, 'shutdown removes the provider');
  });
});
