import { fileURLToPath } from 'node:url';

// The totals service's database schema, named once. A leaf module.

export const TOTALS_SCHEMA = 'totals';

/** Numbered plain-SQL migrations of the totals schema (total, applied events, offsets, rejects). */
export const TOTALS_MIGRATIONS = fileURLToPath(new URL('./migrations', import.meta.url));
