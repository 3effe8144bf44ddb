// `--pg-set name=value` (repeatable): PostgreSQL settings for phase P only, applied with ALTER SYSTEM
// and a reload before the services start, to compare settings such as commit_delay back to back.
import type pg from 'pg';

export function parsePgSettings(given: string[]): [string, string][] {
  return given.map((setting) => {
    const match = /^([a-z_]+)=([\w.]+)$/.exec(setting);
    if (!match) throw new Error(`--pg-set takes name=value (e.g. commit_delay=500), got ${setting}`);
    return [match[1]!, match[2]!];
  });
}

/** Applies `settings` and reloads; settings that need a restart are refused. */
export async function applyPgSettings(sql: pg.Pool, settings: [string, string][]): Promise<void> {
  for (const [name, value] of settings) {
    const { rows } = await sql.query<{ context: string }>('SELECT context FROM pg_settings WHERE name = $1', [name]);
    if (!rows[0]) throw new Error(`--pg-set: PostgreSQL has no setting ${name}`);
    if (rows[0].context === 'postmaster') throw new Error(`--pg-set: ${name} needs a restart; set it in tools/local-stack/postgres-server.ts`);
    await sql.query(`ALTER SYSTEM SET ${name} = '${value}'`);
  }
  if (settings.length > 0) await sql.query('SELECT pg_reload_conf()');
}
