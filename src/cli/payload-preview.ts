// Parked records hold whatever bytes reached the topic. Shown on a terminal they must neither
// flood it nor drive it: text is quoted with every control, C1 and direction-changing character
// escaped, anything else is hex, and both are cut short.

const MAX_CHARACTERS = 120;
const MAX_HEX_BYTES = 32;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
// JSON.stringify escapes C0 controls and quotes; these it leaves as they are.
const UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g;
const CONTROL = /[\u0000-\u001f]/g;
const escape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

function quote(text: string): string {
  return JSON.stringify(text).replace(UNSAFE, escape);
}

/** Text from a record (a reason, a request id) shown as it is, but with nothing a terminal acts on. */
export function safeText(text: string): string {
  return text.replace(CONTROL, escape).replace(UNSAFE, escape);
}

/** A string (a record key) quoted safely; `(none)` when there is none. */
export function previewText(text: string | null): string {
  return text === null ? '(none)' : quote(text);
}

/** The payload as readable text when it is UTF-8, as hex otherwise, with its size. */
export function previewBytes(bytes: Buffer | null): string {
  if (bytes === null) return '(none)';
  if (bytes.length === 0) return '(empty)';
  const size = `${bytes.length} byte${bytes.length === 1 ? '' : 's'}`;
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    const shown = bytes.subarray(0, MAX_HEX_BYTES).toString('hex');
    return `0x${shown}${bytes.length > MAX_HEX_BYTES ? '…' : ''} (${size}, not UTF-8 text)`;
  }
  const characters = [...text];
  const cut = characters.length > MAX_CHARACTERS;
  return `${quote(cut ? characters.slice(0, MAX_CHARACTERS).join('') : text)}${cut ? '…' : ''} (${size})`;
}
