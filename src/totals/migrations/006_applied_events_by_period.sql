-- Bounded state: the applied events, by which a duplicate delivery is recognised, are kept for a
-- window (DEDUP_WINDOW_SECONDS), not forever. totals.applied_events becomes a table partitioned by
-- period ("generation"); the totals service creates partitions ahead, moves the writes on when a
-- period ends, checkpoints a period once it is no longer written to (its rows, their sum and the
-- latest accepted_at), and drops it once it is older than the window. See
-- src/calculator/migrations/005_requests_by_period.sql for why periods are generations switched
-- under a lock.
--
-- An event whose accepted_at is not after the latest accepted_at of every dropped generation may
-- have been applied in one of them: it is never applied blindly, but quarantined in
-- totals.rejected_records.

CREATE TABLE totals.partitions (
  table_name      text NOT NULL,
  generation      integer NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  started_at      timestamptz,
  ended_at        timestamptz,
  closed_at       timestamptz,
  row_count       bigint,
  amount          numeric,
  max_accepted_at timestamptz,
  retired_at      timestamptz,
  dropped_at      timestamptz,
  PRIMARY KEY (table_name, generation)
);
CREATE UNIQUE INDEX partitions_current ON totals.partitions (table_name) WHERE started_at IS NOT NULL AND ended_at IS NULL;

ALTER TABLE totals.applied_events RENAME TO applied_events_g0;
ALTER TABLE totals.applied_events_g0 DROP CONSTRAINT applied_events_pkey;
ALTER INDEX totals.applied_events_request_id RENAME TO applied_events_g0_request_id;
ALTER TABLE totals.applied_events_g0 ADD COLUMN generation integer NOT NULL DEFAULT 0;
ALTER TABLE totals.applied_events_g0 ALTER COLUMN generation DROP DEFAULT;
ALTER TABLE totals.applied_events_g0 ADD CONSTRAINT applied_events_g0_generation CHECK (generation = 0);

CREATE TABLE totals.applied_events (
  event_id        uuid NOT NULL,
  request_id      text NOT NULL,
  amount          numeric NOT NULL,
  accepted_at     timestamptz NOT NULL,
  applied_at      timestamptz NOT NULL DEFAULT now(),
  kafka_partition integer NOT NULL,
  kafka_offset    bigint NOT NULL,
  generation      integer NOT NULL,
  PRIMARY KEY (event_id, generation)
) PARTITION BY LIST (generation);
CREATE INDEX applied_events_request_id ON totals.applied_events (request_id);

-- The generation written to now. The column's default, so that a row written without naming its
-- generation (by hand, by a tool) lands in the current one like the services' rows.
CREATE FUNCTION totals.current_generation(of_table text) RETURNS integer LANGUAGE sql STABLE AS $$
  SELECT generation FROM totals.partitions WHERE table_name = of_table AND started_at IS NOT NULL AND ended_at IS NULL
$$;
ALTER TABLE totals.applied_events ALTER COLUMN generation SET DEFAULT totals.current_generation('applied_events');

ALTER TABLE totals.applied_events ATTACH PARTITION totals.applied_events_g0 FOR VALUES IN (0);
INSERT INTO totals.partitions (table_name, generation, started_at) VALUES ('applied_events', 0, now());

-- A quarantined event (older than the dedup window) is kept with its event id, so that `summa
-- verify` can tell its request from a lost one.
ALTER TABLE totals.rejected_records ADD COLUMN event_id uuid;
