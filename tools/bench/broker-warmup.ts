// A broker started for the benchmark spends its first tens of seconds under load compiling its
// request paths (the JVM's JIT compilers), work a broker that has run for a while did long ago: in
// 8 s windows right after a short warm-up the compilers were 30–60% of Kafka's CPU per request, and at
// 1,400 Add/s they took half of the broker's CPU for 30 s, a tenth only after 80–100 s. P's
// warm-up therefore goes on, in rounds, until they are a small share of the broker's CPU.
import { cpuSeconds, threadsCpuSeconds } from './process-stats.ts';

/** Linux's names (15 characters at most) of a HotSpot JVM's JIT compiler threads. */
export const JIT_COMPILER_THREADS = /^C[12] CompilerThre/;

/** The JIT compilers' share of the broker's CPU under which its warm-up is over. */
export const JIT_SETTLED_SHARE = 0.15;

export function jitSettled(jitCpuSeconds: number, brokerCpuSeconds: number): boolean {
  return brokerCpuSeconds > 0 && jitCpuSeconds / brokerCpuSeconds < JIT_SETTLED_SHARE;
}

export interface BrokerWarmup {
  rounds: number;
  /** Requests acknowledged by the rounds. */
  acked: number;
  /** The compilers' share of the broker's CPU in the last round. */
  lastJitShare: number;
}

/** Runs `round` (which returns the requests it had acknowledged) until the broker's JIT settled, at most `maxRounds` times. */
export async function warmUntilJitSettles(kafkaPid: number, maxRounds: number, round: () => Promise<number>): Promise<BrokerWarmup> {
  let acked = 0;
  for (let rounds = 1; ; rounds += 1) {
    const jit = threadsCpuSeconds(kafkaPid, JIT_COMPILER_THREADS);
    const broker = cpuSeconds(kafkaPid);
    acked += await round();
    const jitDelta = threadsCpuSeconds(kafkaPid, JIT_COMPILER_THREADS) - jit;
    const brokerDelta = cpuSeconds(kafkaPid) - broker;
    const lastJitShare = brokerDelta > 0 ? jitDelta / brokerDelta : 0;
    if (jitSettled(jitDelta, brokerDelta) || rounds >= maxRounds) return { rounds, acked, lastJitShare };
  }
}
