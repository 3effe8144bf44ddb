-- What change data capture (RELAY_MODE=debezium) needs of a row as plain columns: Kafka Connect's
-- transforms read columns, not the JSON in `headers`. Generated, so every writer of the outbox
-- (the calculator, an operator by hand) fills them alike, and the poller relay never reads them.
-- - traceparent: the W3C trace header stored with a traced request, which the event router places
--   in the record's headers as the poller relay does.
-- - capture_topic: the topic to route the record to, marked "#traced" ('#' is never in a Kafka
--   topic name) when the row has a traceparent. Connect can drop a header by a predicate on the
--   topic only, not on its value, and a record of an untraced row must not carry an empty
--   traceparent where the poller's carries none; the mark is removed before the record is written.
ALTER TABLE calculator.outbox
  ADD COLUMN traceparent text GENERATED ALWAYS AS (headers ->> 'traceparent') STORED,
  ADD COLUMN capture_topic text GENERATED ALWAYS AS (
    CASE WHEN headers ->> 'traceparent' IS NULL THEN topic ELSE topic || '#traced' END
  ) STORED;
