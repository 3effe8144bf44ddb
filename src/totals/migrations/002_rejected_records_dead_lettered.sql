-- Whether the dead-letter topic took the record: false when it was missing or refused the write,
-- so that the record is kept here only. NULL for rows written before it was kept.
ALTER TABLE totals.rejected_records ADD COLUMN dead_lettered boolean;
