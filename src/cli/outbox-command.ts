import type { Env } from '../platform/config.ts';
import { createPool } from '../platform/db/pool.ts';
import { listParkedOutboxRows, releaseParkedOutboxRows } from '../outbox/outbox-store.ts';
import { verifyDatabaseUrls } from './verify-command.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `summa outbox parked` lists the events the relays parked (they failed too often for reasons of
 * their own, such as a topic that does not exist); `summa outbox release <event id>... | --all` hands
 * them back to the relays with their attempts reset — once their cause is fixed. Returns the exit code.
 */
export async function runOutboxCommand(env: Env, args: { action: string | undefined; eventIds: string[]; all: boolean }): Promise<number> {
  const badIds = args.eventIds.filter((id) => !UUID.test(id));
  const valid =
    (args.action === 'parked' && args.eventIds.length === 0 && !args.all) ||
    (args.action === 'release' && badIds.length === 0 && args.eventIds.length > 0 !== args.all);
  if (!valid) {
    if (badIds.length > 0) console.error(`summa: not an event id: ${badIds.join(', ')}`);
    return 2;
  }
  const pool = createPool(verifyDatabaseUrls(env).calculator, { max: 1, applicationName: 'summa-cli' });
  try {
    if (args.action === 'parked') {
      const parked = await listParkedOutboxRows(pool);
      for (const event of parked) {
        console.log(`${event.event_id}  topic ${event.topic}  parked ${event.parked_at.toISOString()} after ${event.attempts} attempts: ${event.last_error ?? '(no reason)'}`);
      }
      console.log(`${parked.length} parked event(s)`);
      return 0;
    }
    const released = await releaseParkedOutboxRows(pool, args.all ? null : args.eventIds);
    for (const event of released) console.log(`released ${event.event_id}  topic ${event.topic}`);
    console.log(`${released.length} event(s) released`);
    const notFound = args.eventIds.filter((id) => !released.some((event) => event.event_id === id.toLowerCase()));
    if (notFound.length > 0) console.error(`not parked: ${notFound.join(', ')}`);
    return notFound.length > 0 ? 1 : 0;
  } finally {
    await pool.end();
  }
}
