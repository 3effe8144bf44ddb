import { Consumer } from '@platformatic/kafka';
import { baseClientOptions, type KafkaSettings } from './settings.ts';
import { guardUnknownBrokers } from './unknown-broker.ts';

export interface MemberOptions extends KafkaSettings {
  groupId: string;
  sessionTimeoutMs: number;
  /** Most records the consumer hands out at once; the stream buffers twice that. */
  maxBatchSize: number;
}

/** Our membership in the group. Kept across stream failures so that we rejoin under the same
 * member id: a fresh member would wait for the old one's session timeout after a broker restart. */
export interface Member {
  readonly consumer: Consumer;
  /** Set when the library gave up on the membership (it emitted 'error'); then it is replaced. */
  broken: Error | null;
  /** The session currently reading through this member, told when the member breaks. */
  onBreak: ((error: Error) => void) | null;
}

/** Hands out our one member at a time: the same one until it breaks, then a new one. */
export interface Membership {
  /** The current member; a broken one is disposed of and replaced first. */
  current(): Promise<Member>;
  /** Disposes of the current member (leaving the group), if there is one. */
  leave(): Promise<void>;
}

export function createMembership(options: MemberOptions): Membership {
  let member: Member | null = null;
  return {
    async current() {
      if (member?.broken) {
        await disposeConsumer(member.consumer);
        member = null;
      }
      return (member ??= createMember(options));
    },
    async leave() {
      const leaving = member;
      member = null;
      if (leaving) await disposeConsumer(leaving.consumer);
    },
  };
}

function createMember(options: MemberOptions): Member {
  const sessionTimeout = options.sessionTimeoutMs;
  const consumer = guardUnknownBrokers(
    new Consumer({
      ...baseClientOptions(options),
      groupId: options.groupId,
      autocommit: false,
      sessionTimeout,
      rebalanceTimeout: sessionTimeout,
      heartbeatInterval: Math.min(1_000, Math.floor(sessionTimeout / 3)),
      // An idle fetch returns after this long; it bounds how quickly close() gets through.
      maxWaitTime: 500,
      highWaterMark: Math.max(1024, 2 * options.maxBatchSize),
      retries: 3,
      retryDelay: 500,
    }),
  );
  const created: Member = { consumer, broken: null, onBreak: null };
  // Emitted when rejoining the group failed for good; without a listener it would crash the process.
  consumer.on('error', (error: Error) => {
    created.broken ??= error;
    created.onBreak?.(error);
  });
  return created;
}

/** Closes a consumer (leaving the group when the broker is reachable) and always its sockets. */
async function disposeConsumer(consumer: Consumer): Promise<void> {
  try {
    // close(true) closes the streams first; the typings pick the callback overload for a literal.
    await new Promise<void>((resolve, reject) => consumer.close(true, (error) => (error ? reject(error) : resolve())));
  } catch {
    // Leaving the group failed (broker gone?): the group drops us after the session timeout.
    await consumer.connections.close().catch(() => {});
  }
}

/** The partitions of `topic` the group currently gives `consumer` (none before it joined). */
export function assignedPartitions(consumer: Consumer | undefined, topic: string): number[] {
  return consumer?.assignments?.find((assignment) => assignment.topic === topic)?.partitions ?? [];
}
