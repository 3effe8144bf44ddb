-- The id Kafka gave the topic the offsets are of. Offsets are taken to resume from only under the
-- topic's current id: a topic deleted and created again under the same name starts its offsets
-- anew, and the old ones would skip its first records. NULL for rows written before it was kept.
ALTER TABLE totals.consumer_offsets ADD COLUMN topic_id text;
