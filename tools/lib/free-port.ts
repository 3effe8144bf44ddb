import { readFileSync } from 'node:fs';
import net from 'node:net';

/**
 * Where freePort looks: below the kernel's ephemeral range (Linux: /proc/sys/net/ipv4/ip_local_port_range,
 * 32768–60999 by default), from which every outgoing connection takes its local port. A port the kernel
 * hands out for `listen(0)` comes from that range, so between the check and the service binding it, any
 * connection made on the machine (a database client, a Kafka client) may take it: EADDRINUSE. Below the
 * range only another picker can take it, and picking at random makes that unlikely.
 */
export function pickRange(ephemeralLow = ephemeralRangeLow()): { low: number; high: number } | undefined {
  const high = Math.min(ephemeralLow, 65_536) - 1;
  const low = Math.max(10_000, high - 12_000);
  return high - low >= 1_000 ? { low, high } : undefined;
}

function ephemeralRangeLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return Number.isInteger(low) ? low! : 32_768;
  } catch {
    return 32_768;
  }
}

/** Ports this process handed out already: never twice. */
const handedOut = new Set<number>();

/** A TCP port on 127.0.0.1 that was free a moment ago, outside the ephemeral range, and none of `exclude`. */
export async function freePort(exclude: readonly number[] = []): Promise<number> {
  const range = pickRange();
  if (range) {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const port = range.low + Math.floor(Math.random() * (range.high - range.low + 1));
      if (exclude.includes(port) || handedOut.has(port)) continue;
      if (await portIsFree(port)) {
        handedOut.add(port);
        return port;
      }
    }
  }
  // No room below the ephemeral range (or all of it taken): let the kernel choose.
  for (;;) {
    const port = await kernelChosenPort();
    if (!exclude.includes(port) && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

function kernelChosenPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Whether 127.0.0.1:port can be bound right now. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
