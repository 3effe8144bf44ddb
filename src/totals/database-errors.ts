import type Pg from 'pg';
import pg from '../platform/db/pg.ts';

/**
 * SQLSTATE classes that blame the data of a statement, not the database: it would fail the same
 * way on every retry. 22 data exception (a value out of range, a NUL in text, a bad encoding),
 * 23 integrity constraint violation, 54 program limit exceeded (a value too large for an index).
 */
const PERMANENT_CLASSES = new Set(['22', '23', '54']);

/**
 * Whether PostgreSQL refused a statement for the values in it, so that retrying can never help.
 * Anything else (a lost connection, a timeout, a serialization failure or deadlock, a missing
 * table or privilege, a database shutting down) may pass and is worth retrying.
 */
export function isPermanentDatabaseError(error: unknown): error is Pg.DatabaseError {
  return error instanceof pg.DatabaseError && typeof error.code === 'string' && PERMANENT_CLASSES.has(error.code.slice(0, 2));
}

/** "message (SQLSTATE code)" of a database error, the message of any other. */
export function describeDatabaseError(error: unknown): string {
  if (error instanceof pg.DatabaseError) return `${error.message} (SQLSTATE ${error.code})`;
  return error instanceof Error ? error.message : String(error);
}
