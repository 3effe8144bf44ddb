import type pg from 'pg';
import { OUTBOX_TABLE } from '../calculator/schema.ts';

// Change data capture of the outbox (RELAY_MODE=debezium): instead of a relay polling the table,
// Debezium reads the outbox rows' inserts from PostgreSQL's write-ahead log through a logical
// replication slot and a publication, and Kafka Connect publishes them. This is the publication.

/** The publication Debezium's connector reads the outbox through, unless told another. */
export const OUTBOX_PUBLICATION = 'summa_outbox';

/**
 * Inserts only: in CDC mode the calculator deletes each outbox row in the transaction that wrote
 * it (so the table stays empty), and the deletes are no events. Publishing only the inserts keeps
 * them out of the replication stream altogether, rather than decoding and dropping them.
 */
const createPublicationSql = (name: string) =>
  // Generated columns (migration 004: traceparent, capture_topic) are published from PostgreSQL 18 on.
  `CREATE PUBLICATION ${name} FOR TABLE ${OUTBOX_TABLE} WITH (publish = 'insert', publish_generated_columns = stored)`;

const PUBLICATION_SQL = `
SELECT p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.pubgencols = 's' AS pubgencols,
       array(SELECT schemaname || '.' || tablename FROM pg_publication_tables t WHERE t.pubname = p.pubname ORDER BY 1) AS tables
FROM pg_publication p WHERE p.pubname = $1`;

/**
 * Creates the outbox's publication unless it exists; one that exists must publish the outbox's
 * inserts and nothing else, or this throws (it was made by hand: the operator decides). Needs the
 * calculator's schema migrated, and CREATE on the database.
 */
export async function ensureOutboxPublication(db: Pick<pg.ClientBase, 'query'>, name = OUTBOX_PUBLICATION): Promise<void> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`publication name ${JSON.stringify(name)} is not a plain lower-case identifier`);
  const found = async () =>
    (await db.query<{ pubinsert: boolean; pubupdate: boolean; pubdelete: boolean; pubtruncate: boolean; pubgencols: boolean; tables: string[] }>(
      PUBLICATION_SQL,
      [name],
    )).rows[0];
  let publication = await found();
  if (!publication) {
    try {
      await db.query(createPublicationSql(name));
    } catch (error) {
      // Another starter made it meanwhile.
      if ((error as { code?: string }).code !== '42710') throw error;
    }
    publication = await found();
  }
  const { pubinsert, pubupdate, pubdelete, pubtruncate, pubgencols, tables } = publication!;
  if (!pubinsert || pubupdate || pubdelete || pubtruncate || !pubgencols || tables.length !== 1 || tables[0] !== OUTBOX_TABLE) {
    throw new Error(
      `the publication ${name} exists but is not the outbox's (inserts of ${OUTBOX_TABLE} only, with its generated columns): it publishes ` +
        `${JSON.stringify({ insert: pubinsert, update: pubupdate, delete: pubdelete, truncate: pubtruncate, generatedColumns: pubgencols, tables })}; drop it or name another`,
    );
  }
}
