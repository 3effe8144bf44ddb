import type pg from 'pg';

/**
 * The rows of one query, read through a server-side cursor (DECLARE ... FETCH) of the transaction
 * `client` has open, a batch at a time: memory holds at most two batches (the one being read and
 * the next, fetched meanwhile), however many rows the query yields. Rows come as arrays, in the
 * order of the query's select list.
 *
 * Several streams may share one connection (and so one snapshot): their fetches take turns.
 */
export class RowStream {
  /** The current row; undefined once the rows are used up. */
  row: unknown[] | undefined;
  private batch: unknown[][] = [];
  private index = 0;
  private exhausted = false;
  private next: Promise<unknown[][]> | undefined;

  private constructor(
    private readonly client: pg.ClientBase,
    private readonly name: string,
    private readonly batchSize: number,
  ) {}

  /** Declares the cursor and reads its first batch; `row` is then the first row (or undefined). */
  static async open(client: pg.ClientBase, name: string, sql: string, params: unknown[], batchSize: number): Promise<RowStream> {
    const stream = new RowStream(client, name, batchSize);
    await client.query(`DECLARE ${name} NO SCROLL CURSOR FOR ${sql}`, params);
    stream.next = stream.fetch();
    await stream.refill();
    return stream;
  }

  /** Moves to the next row; returns a promise only when a new batch has to be awaited. */
  advance(): Promise<void> | undefined {
    this.index += 1;
    if (this.index < this.batch.length) {
      this.row = this.batch[this.index];
      return undefined;
    }
    return this.refill();
  }

  private async refill(): Promise<void> {
    if (this.exhausted) {
      this.batch = [];
      this.row = undefined;
      return;
    }
    this.batch = await this.next!;
    this.index = 0;
    if (this.batch.length < this.batchSize) {
      this.exhausted = true;
      this.next = undefined;
    } else {
      this.next = this.fetch();
    }
    this.row = this.batch[0];
  }

  private fetch(): Promise<unknown[][]> {
    const rows = this.client
      .query<unknown[]>({ text: `FETCH FORWARD ${this.batchSize} FROM ${this.name}`, rowMode: 'array' })
      .then((result) => result.rows);
    // Awaited by the next refill; until then a failure must not count as unhandled.
    rows.catch(() => {});
    return rows;
  }
}

/** Calls `each` for every row of the query, streamed as RowStream does. */
export async function forEachRow(
  client: pg.ClientBase,
  name: string,
  sql: string,
  params: unknown[],
  batchSize: number,
  each: (row: unknown[]) => void,
): Promise<void> {
  const stream = await RowStream.open(client, name, sql, params, batchSize);
  while (stream.row) {
    each(stream.row);
    const wait = stream.advance();
    if (wait) await wait;
  }
}
