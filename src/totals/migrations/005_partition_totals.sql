-- The total, kept as one subtotal per Kafka partition and summed when read. With a single total
-- row, every consumer's transaction updated that row and consumers of different partitions waited
-- for each other on its lock; now a batch only locks the rows of the partitions its events came
-- from.
CREATE TABLE totals.partition_totals (
  partition  integer PRIMARY KEY,
  total      numeric NOT NULL DEFAULT 0,
  count      bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- The total recorded so far is carried over as it stands, as the row of partition -1 (a partition
-- Kafka never has), rather than spread over the partitions by summing totals.applied_events: the
-- recorded total is what was committed with the events, and were it ever unlike the applied events,
-- recomputing it here would hide that from `summa verify` instead of keeping it to be found.
INSERT INTO totals.partition_totals (partition, total, count, updated_at)
SELECT -1, total, count, updated_at FROM totals.total WHERE id = 1;

DROP TABLE totals.total;

-- Read as before: one row, id 1, the sum over the partitions (zero over none).
CREATE VIEW totals.total AS
SELECT 1::smallint AS id,
       coalesce(sum(total), 0) AS total,
       coalesce(sum(count), 0)::bigint AS count,
       coalesce(max(updated_at), '-infinity'::timestamptz) AS updated_at
FROM totals.partition_totals;
