/**
 * What a failed publish is to be blamed on, which decides what its records' sender does next:
 *
 * - 'topic': every record for that topic fails and will keep failing whatever else happens — the
 *   topic does not exist (and the broker creates none on its own), its name is invalid, or we may
 *   not write to it. Retrying the records soon is pointless; other topics are unaffected.
 * - 'record': Kafka refused something in the records themselves (too large, malformed). Sent on
 *   their own, the others would go through.
 * - 'unavailable': anything else — the broker unreachable, a timeout, no leader, too few in-sync
 *   replicas. Nothing about the records: they are to be retried as they are once Kafka is back.
 *
 * Only the first two may count against the records. Anything not known to be the records' fault is
 * 'unavailable', so that an outage of any kind never counts against an event.
 */
export type PublishFailureBlame = 'topic' | 'record' | 'unavailable';

const TOPIC_FAULTS = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'INVALID_TOPIC_EXCEPTION', 'TOPIC_AUTHORIZATION_FAILED']);
const RECORD_FAULTS = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE']);

export function blamePublishFailure(error: unknown): PublishFailureBlame {
  let blame: PublishFailureBlame = 'unavailable';
  for (const cause of causesOf(error)) {
    const { apiId, code, message } = cause as { apiId?: unknown; code?: unknown; message?: unknown };
    // @platformatic/kafka reports a topic the metadata does not know as its own UserError, not as
    // the broker's UNKNOWN_TOPIC_OR_PARTITION (and only after retrying the metadata request).
    const unknownTopic = code === 'PLT_KFK_USER' && typeof message === 'string' && message.startsWith('Unknown topic ');
    if (unknownTopic || TOPIC_FAULTS.has(apiId as string)) return 'topic';
    if (RECORD_FAULTS.has(apiId as string)) blame = 'record';
  }
  return blame;
}

/** The error and everything nested in it: AggregateError's errors (the library's MultipleErrors) and causes. */
function* causesOf(error: unknown, depth = 0): Generator<object> {
  if (typeof error !== 'object' || error === null || depth > 8) return;
  yield error;
  const { errors, cause } = error as { errors?: unknown; cause?: unknown };
  if (Array.isArray(errors)) for (const nested of errors) yield* causesOf(nested, depth + 1);
  yield* causesOf(cause, depth + 1);
}
