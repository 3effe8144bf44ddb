// A kill -9 of a totals consumer between its database commit and its Kafka commit, without any
// hook in the service. Each batch the consumer applies commits its events, the total and the next
// offsets (totals.consumer_offsets) in one PostgreSQL transaction, and only then commits the same
// offsets to the Kafka group. A consumer that dies in between leaves the group's committed offsets
// behind the database's: whoever reads those partitions next is handed the records in the gap
// again, and must skip them by event id.
//
// To land a kill in that gap under load, the process is frozen (SIGSTOP) at an arbitrary moment,
// given a few milliseconds for the requests it already sent to land, and both sets of offsets are
// read. If the database is ahead on a partition the consumer holds, it is killed while frozen (it
// cannot commit anything any more); otherwise it is thawed (SIGCONT) and the next moment is tried.
// After the kill the group's offsets are read once more: a gap still there is certain to be
// delivered again.
import { setTimeout as sleep } from 'node:timers/promises';
import { randomInt } from 'node:crypto';
import { Admin } from '@platformatic/kafka';
import type pg from 'pg';
import { baseClientOptions, type KafkaSecurity } from '../../src/platform/kafka/settings.ts';

/** A partition on which PostgreSQL has applied records the Kafka group has not committed. */
export interface CommitGap {
  partition: number;
  /** next_offset in totals.consumer_offsets. */
  database: bigint;
  /** The group's committed offset in Kafka. */
  kafka: bigint;
}

export interface CommitWindowTarget {
  /** The totals process. */
  pid: number;
  /** Its HTTP base URL (for /metrics: the partitions it holds). */
  url: string;
  sql: pg.Pool;
  brokers: string[];
  /** How to connect to those brokers (unset: PLAINTEXT); reading the group's offsets needs DESCRIBE on it. */
  kafkaSecurity?: KafkaSecurity;
  groupId: string;
  topic: string;
}

export interface CommitWindowKill {
  /** Whether the kill left a gap: records applied in PostgreSQL that Kafka will deliver again. */
  landed: boolean;
  gaps: CommitGap[];
  /** Records in the gaps: each will be delivered again and must be skipped. */
  records: number;
  /** Freezes it took. */
  attempts: number;
  /** The duplicates it had skipped by its last scrape before the kill. */
  duplicatesSkipped: number;
}

/**
 * Tries until `timeoutMs` has passed to kill the consumer inside its commit window, then kills it
 * anyway. `kill` must SIGKILL the process and resolve once it has exited. Resolves once the gaps
 * it left are measured.
 */
export async function killInCommitWindow(target: CommitWindowTarget, kill: () => Promise<unknown>, timeoutMs: number): Promise<CommitWindowKill> {
  const admin = new Admin({
    ...baseClientOptions({ brokers: target.brokers, clientId: 'summa-commit-window', security: target.kafkaSecurity }),
    connectTimeout: 2_000,
    timeout: 5_000,
    retries: 1,
  });
  const deadline = Date.now() + timeoutMs;
  let attempts = 0;
  let duplicatesSkipped = 0;
  let held: number[] = [];
  let frozen = false;
  try {
    while (Date.now() < deadline) {
      const scrape = await scrapeTotals(target.url).catch(() => undefined);
      if (scrape) ({ partitions: held, duplicatesSkipped } = scrape);
      if (!scrape || held.length === 0) {
        await sleep(100); // between assignments (a rebalance), or not answering
        continue;
      }
      attempts += 1;
      signal(target.pid, 'SIGSTOP');
      frozen = true;
      // A Kafka commit or a PostgreSQL COMMIT already on the wire lands meanwhile.
      await sleep(30);
      const gaps = await commitGaps(target, admin, held).catch(() => []);
      if (gaps.length > 0) {
        // A Kafka commit sent just before the freeze may still be on its way (a loaded machine takes
        // longer than the pause above): the gap is the frozen consumer's only if it outlasts that.
        await sleep(250);
        const still = await commitGaps(target, admin, held).catch(() => []);
        if (still.some((gap) => gaps.some((first) => first.partition === gap.partition && first.kafka === gap.kafka))) break;
      }
      signal(target.pid, 'SIGCONT');
      frozen = false;
      await sleep(randomInt(10, 60));
    }
    await kill(); // a frozen process dies of SIGKILL all the same
    frozen = false;
    // Dead now: neither offset of its partitions moves until the group hands them to another
    // member, which takes a session timeout. A gap that is still there a moment later is not some
    // other member's commit under way.
    const first = held.length === 0 ? [] : await commitGaps(target, admin, held).catch(() => []);
    await sleep(250);
    const again = first.length === 0 ? [] : await commitGaps(target, admin, held).catch(() => []);
    const gaps = first.filter((gap) => again.some((later) => later.partition === gap.partition && later.kafka === gap.kafka));
    const records = gaps.reduce((n, gap) => n + Number(gap.database - gap.kafka), 0);
    return { landed: gaps.length > 0, gaps, records, attempts, duplicatesSkipped };
  } finally {
    if (frozen) signal(target.pid, 'SIGCONT');
    await admin.close().catch(() => {});
  }
}

/** Partitions of `held` whose database offset is ahead of the group's committed offset in Kafka. */
export async function commitGaps(target: Pick<CommitWindowTarget, 'sql' | 'groupId' | 'topic'>, admin: Admin, held: number[]): Promise<CommitGap[]> {
  // The database first: if it is ahead of what Kafka says afterwards, it was ahead at that moment.
  const { rows } = await target.sql.query<{ partition: number; next_offset: string }>(
    'SELECT partition, next_offset::text FROM totals.consumer_offsets WHERE group_id = $1 AND topic = $2',
    [target.groupId, target.topic],
  );
  const [group] = await admin.listConsumerGroupOffsets({ groups: [target.groupId] });
  const committed = new Map((group?.topics.find((t) => t.name === target.topic)?.partitions ?? []).map((p) => [p.partitionIndex, p.committedOffset]));
  const gaps: CommitGap[] = [];
  for (const row of rows) {
    if (!held.includes(row.partition)) continue;
    const database = BigInt(row.next_offset);
    // -1: nothing committed in Kafka yet, so everything applied will come again.
    const kafka = committed.get(row.partition) ?? -1n;
    const from = kafka < 0n ? 0n : kafka;
    if (database > from) gaps.push({ partition: row.partition, database, kafka: from });
  }
  return gaps;
}

export interface TotalsScrape {
  /** The partitions it holds (the labels of its consumer lag gauge). */
  partitions: number[];
  duplicatesSkipped: number;
  recordsConsumed: number;
  eventsApplied: number;
}

/** What a totals instance's /metrics says about its consumer. */
export async function scrapeTotals(url: string): Promise<TotalsScrape> {
  const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3_000) });
  if (!response.ok) throw new Error(`${url}/metrics answered ${response.status}`);
  const text = await response.text();
  const partitions = [...text.matchAll(/^summa_totals_consumer_lag_records\{[^}]*partition="(\d+)"[^}]*\} /gm)].map((m) => Number(m[1]));
  return {
    partitions,
    duplicatesSkipped: counter(text, 'summa_totals_duplicates_skipped_total'),
    recordsConsumed: counter(text, 'summa_totals_records_consumed_total'),
    eventsApplied: counter(text, 'summa_totals_events_applied_total'),
  };
}

function counter(text: string, name: string): number {
  const line = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  if (!line) throw new Error(`${name} is not in the metrics`);
  return Number(line[1]);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}
