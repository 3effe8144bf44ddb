-- The running total. numeric is exact at any magnitude: no float rounding, no 64-bit overflow.
CREATE TABLE totals.total (
  id         smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  total      numeric NOT NULL DEFAULT 0,
  count      bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO totals.total (id) VALUES (1);

-- Every event applied to the total, once: an event Kafka delivers again finds its row here and is
-- skipped.
CREATE TABLE totals.applied_events (
  event_id        uuid PRIMARY KEY,
  request_id      text NOT NULL,
  amount          numeric NOT NULL,
  accepted_at     timestamptz NOT NULL,
  applied_at      timestamptz NOT NULL DEFAULT now(),
  kafka_partition integer NOT NULL,
  kafka_offset    bigint NOT NULL
);
CREATE INDEX applied_events_request_id ON totals.applied_events (request_id);

-- The next offset to read per partition, committed in the same transaction as the events it
-- covers. Only ever moves forward.
CREATE TABLE totals.consumer_offsets (
  group_id    text NOT NULL,
  topic       text NOT NULL,
  partition   integer NOT NULL,
  next_offset bigint NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, topic, partition)
);

-- Records that could not be read as events, kept with the reason instead of blocking the partition.
CREATE TABLE totals.rejected_records (
  topic           text NOT NULL,
  kafka_partition integer NOT NULL,
  kafka_offset    bigint NOT NULL,
  reason          text NOT NULL,
  message_key     text,
  payload         bytea,
  rejected_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
