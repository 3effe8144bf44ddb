import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Pool } from './pool.ts';

const MIGRATION_FILE = /^(\d{3})_[\w-]+\.sql$/;

/**
 * Applies the numbered plain-SQL migrations of one schema, each in its own transaction, under an
 * advisory lock so that several instances starting together apply each migration exactly once.
 */
export async function migrate(pool: Pool, schema: string, directory: string): Promise<void> {
  const files = (await readdir(directory)).filter((name) => MIGRATION_FILE.test(name)).sort();
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [`summa:migrate:${schema}`]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (
           version integer PRIMARY KEY,
           name text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
      const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations`);
      const applied = new Set(rows.map((row) => row.version));
      for (const name of files) {
        const version = Number(MIGRATION_FILE.exec(name)![1]);
        if (applied.has(version)) continue;
        const sql = await readFile(path.join(directory, name), 'utf8');
        await client.query('BEGIN');
        try {
          await client.query(sql);
          await client.query(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES ($1, $2)`, [version, name]);
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK');
          throw new Error(`migration ${schema}/${name} failed: ${(error as Error).message}`, { cause: error });
        }
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`summa:migrate:${schema}`]);
    }
  } finally {
    client.release();
  }
}
