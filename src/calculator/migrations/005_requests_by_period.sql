-- Bounded state: the idempotency records are kept for a window (IDEMPOTENCY_WINDOW_SECONDS), not
-- forever. calculator.requests becomes a table partitioned by period: each partition ("generation")
-- takes the requests of one period, and the calculator itself creates partitions ahead, moves the
-- writes on to the next one when a period ends, and drops a whole partition once its period is older
-- than the window (src/platform/db/period-partitions.ts). Dropping a partition costs no DELETE and
-- leaves no dead rows to vacuum.
--
-- Why periods are generations, switched under a lock, rather than ranges of accepted_at: a request
-- id must stay unique across partitions, and a unique index only covers its own partition. A new
-- request is checked against every partition and inserted into the current one with ON CONFLICT, in
-- one statement. A retry straddling a time boundary could otherwise meet its original still being
-- written into the previous partition, unseen, and be recorded twice. The switch to the next
-- generation takes a SHARE lock on this table, which waits for the writes in flight and holds the
-- new ones back until it commits: every write into an earlier generation has committed before any
-- write can go into the next one.

-- The partitions of this schema's partitioned tables, one row per generation.
CREATE TABLE calculator.partitions (
  table_name      text NOT NULL,
  generation      integer NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  -- When it became the one written to (NULL: made ahead, not yet written to) and when the next one
  -- took over (NULL: it is still written to).
  started_at      timestamptz,
  ended_at        timestamptz,
  -- Its checkpoint, taken once it is no longer written to: rows, the sum of their amounts and the
  -- latest accepted_at among them. What `summa verify` checks the history by once the rows are gone.
  closed_at       timestamptz,
  row_count       bigint,
  amount          numeric,
  max_accepted_at timestamptz,
  -- Set when it is about to be dropped, before the rows go; then when they are gone.
  retired_at      timestamptz,
  dropped_at      timestamptz,
  PRIMARY KEY (table_name, generation)
);
-- At most one generation of a table is written to at a time.
CREATE UNIQUE INDEX partitions_current ON calculator.partitions (table_name) WHERE started_at IS NOT NULL AND ended_at IS NULL;

-- The existing rows become generation 0, written to until the first period ends.
ALTER TABLE calculator.requests RENAME TO requests_g0;
ALTER TABLE calculator.requests_g0 DROP CONSTRAINT requests_pkey;
-- Found by request id only: nothing reads a request by its event id but `summa verify`, which scans.
ALTER TABLE calculator.requests_g0 DROP CONSTRAINT requests_event_id_key;
ALTER TABLE calculator.requests_g0 ADD COLUMN generation integer NOT NULL DEFAULT 0;
ALTER TABLE calculator.requests_g0 ALTER COLUMN generation DROP DEFAULT;
ALTER TABLE calculator.requests_g0 ADD CONSTRAINT requests_g0_generation CHECK (generation = 0);

CREATE TABLE calculator.requests (
  request_id  text NOT NULL,
  num1        bigint NOT NULL,
  num2        bigint NOT NULL,
  sum         bigint NOT NULL,
  event_id    uuid NOT NULL,
  accepted_at timestamptz NOT NULL DEFAULT now(),
  generation  integer NOT NULL,
  PRIMARY KEY (request_id, generation)
) PARTITION BY LIST (generation);

-- The generation written to now. The column's default, so that a row written without naming its
-- generation (by hand, by a tool) lands in the current one like the services' rows.
CREATE FUNCTION calculator.current_generation(of_table text) RETURNS integer LANGUAGE sql STABLE AS $$
  SELECT generation FROM calculator.partitions WHERE table_name = of_table AND started_at IS NOT NULL AND ended_at IS NULL
$$;
ALTER TABLE calculator.requests ALTER COLUMN generation SET DEFAULT calculator.current_generation('requests');

ALTER TABLE calculator.requests ATTACH PARTITION calculator.requests_g0 FOR VALUES IN (0);
INSERT INTO calculator.partitions (table_name, generation, started_at) VALUES ('requests', 0, now());
