import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { freePort, pickRange } from '../../tools/lib/free-port.ts';

describe('freePort', () => {
  // A port from the ephemeral range can be taken by any outgoing connection before the service binds
  // it; that made `npm start` in tests fail with EADDRINUSE now and then on a busy machine.
  it('picks ports below the kernel ephemeral range, where no outgoing connection takes them', async () => {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of ports) assert.ok(port < low!, `port ${port} is in the ephemeral range from ${low}`);
    assert.equal(new Set(ports).size, ports.length, 'never the same port twice');
  });

  it('leaves out the ports it is told to', async () => {
    const first = await freePort();
    const second = await freePort([first]);
    assert.notEqual(first, second);
  });

  it('finds room below any ephemeral range that leaves some, and none below one that leaves none', () => {
    assert.deepEqual(pickRange(32_768), { low: 20_767, high: 32_767 });
    assert.deepEqual(pickRange(15_000), { low: 10_000, high: 14_999 });
    assert.equal(pickRange(10_500), undefined);
  });
});
