import type { QueryConfig } from 'pg';

/**
 * A statement that each connection prepares once (parse, analyse, and after a few runs a generic
 * plan) and then only executes. The hot statements write to and read from tables partitioned by
 * period with several CTEs: planned at every call, planning cost PostgreSQL as much CPU as running
 * them (BENCHMARKS.md, "Planning and the outbox's dead rows"). A plan is thrown away and made again
 * by PostgreSQL itself when a table it uses changes (a partition attached or dropped).
 *
 * The name is the statement's on every connection of the process, so one name must always carry
 * the same text: preparedStatement refuses a name already given to another text.
 */
export interface PreparedStatement {
  readonly name: string;
  readonly text: string;
}

const texts = new Map<string, string>();

export function preparedStatement(name: string, text: string): PreparedStatement {
  const known = texts.get(name);
  if (known !== undefined && known !== text) throw new Error(`prepared statement name ${JSON.stringify(name)} is already used by another statement`);
  texts.set(name, text);
  return { name, text };
}

/** The statement with its parameters, as `pool.query` and `client.query` take it. */
export function withValues(statement: PreparedStatement, values: unknown[]): QueryConfig {
  return { name: statement.name, text: statement.text, values };
}
