import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { previewBytes, previewText, safeText } from '../../src/cli/payload-preview.ts';
import { formatRecordId, parseRecordId } from '../../src/totals/rejected-records.ts';

describe('payload preview', () => {
  it('shows UTF-8 text quoted, with its size', () => {
    assert.equal(previewBytes(Buffer.from('{"type":"x"}')), '"{\\"type\\":\\"x\\"}" (12 bytes)');
    assert.equal(previewBytes(Buffer.from('é')), '"é" (2 bytes)');
  });

  it('escapes whatever a terminal would act on', () => {
    assert.equal(previewBytes(Buffer.from('a\u001b[31mb\nc\u009bd\u202ee')), '"a\\u001b[31mb\\nc\\u009bd\\u202ee" (16 bytes)');
  });

  it('cuts long text, saying so', () => {
    const preview = previewBytes(Buffer.from('x'.repeat(500)));
    assert.equal(preview, `"${'x'.repeat(120)}"… (500 bytes)`);
  });

  it('shows bytes that are not UTF-8 as hex, cut after 32', () => {
    assert.equal(previewBytes(Buffer.from([0, 1, 0xff])), '0x0001ff (3 bytes, not UTF-8 text)');
    assert.equal(previewBytes(Buffer.alloc(40, 0xff)), `0x${'ff'.repeat(32)}… (40 bytes, not UTF-8 text)`);
  });

  it('names an empty or missing payload', () => {
    assert.equal(previewBytes(Buffer.alloc(0)), '(empty)');
    assert.equal(previewBytes(null), '(none)');
  });

  it('quotes a key and names a missing one', () => {
    assert.equal(previewText('order-7'), '"order-7"');
    assert.equal(previewText('\u001b'), '"\\u001b"');
    assert.equal(previewText(null), '(none)');
  });

  it('keeps plain text plain, escaping only what a terminal acts on', () => {
    assert.equal(safeText('unknown event type "x"'), 'unknown event type "x"');
    assert.equal(safeText('a\u001bb\u009bc\nd'), 'a\\u001bb\\u009bc\\u000ad');
  });
});

describe('rejected record ids', () => {
  it('read topic/partition/offset and print back the same', () => {
    const id = parseRecordId('summa.sums.v1/3/9223372036854775807');
    assert.deepEqual(id, { topic: 'summa.sums.v1', partition: 3, offset: 9223372036854775807n });
    assert.equal(formatRecordId(id!), 'summa.sums.v1/3/9223372036854775807');
  });

  it('refuse anything else', () => {
    for (const text of ['', 'topic', 'topic/1', '/1/2', 'topic/-1/2', 'topic/1/x', 'topic/1/2/3', 'topic/2147483648/0', 'topic/0/9223372036854775808', 'to pic/0/1']) {
      assert.equal(parseRecordId(text), undefined, text);
    }
  });
});
