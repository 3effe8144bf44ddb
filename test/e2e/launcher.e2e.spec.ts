import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startPostgresServer } from '../../tools/local-stack/postgres-server.ts';
import { sleep, waitForTotalCount } from '../../tools/load/add-load.ts';
import { freePort } from '../../tools/lib/free-port.ts';
import { CalculatorClient } from '../../tools/lib/grpc-clients.ts';
import { readRunState } from '../../src/cli/run-state.ts';
import { repoRoot } from '../../tools/lib/paths.ts';
import { SERVICE_NODE_FLAGS } from '../../tools/lib/service-node-flags.ts';
import { Launcher, listening, processesOf, startedAs } from '../support/launcher-process.ts';
import { testKafkaBrokers, createTestDatabase, type TestDatabase } from '../support/test-environment.ts';

describe('npm start: the whole system on embedded PostgreSQL and Kafka', { timeout: 300_000 }, () => {
  let dataDir: string;
  let env: Record<string, string>;
  let grpcAddress: string;
  let totalsUrl: string;
  let ports: number[];

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-launcher-'));
    await chmod(dataDir, 0o755); // as root, PostgreSQL runs as "postgres", which must enter it
    ports = await Promise.all(Array.from({ length: 7 }, () => freePort()));
    const [postgres, kafka, controller, grpc, calculatorHttp, relayHttp, totalsHttp] = ports.map(String);
    env = {
      SUMMA_DATA_DIR: dataDir,
      SUMMA_POSTGRES_PORT: postgres!,
      SUMMA_KAFKA_PORT: kafka!,
      SUMMA_KAFKA_CONTROLLER_PORT: controller!,
      CALCULATOR_GRPC_PORT: grpc!,
      CALCULATOR_HTTP_PORT: calculatorHttp!,
      RELAY_HTTP_PORT: relayHttp!,
      TOTALS_HTTP_PORT: totalsHttp!,
    };
    grpcAddress = `127.0.0.1:${grpc}`;
    totalsUrl = `http://127.0.0.1:${totalsHttp}`;
  });

  after(async () => {
    for (const { pid } of processesOf(dataDir)) process.kill(pid, 'SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  it('starts everything, restarts a service that dies, stops cleanly on Ctrl-C, and keeps the data', async () => {
    const first = new Launcher(env);
    await first.waitFor('Summa is running.', 180_000);
    assert.match(first.output, new RegExp(`Calculator gRPC\\s+127\\.0\\.0\\.1:${ports[3]}`));
    assert.match(first.output, new RegExp(`Totals REST\\s+http://127\\.0\\.0\\.1:${ports[6]}/total`));

    const client = new CalculatorClient(grpcAddress, { compat: true });
    try {
      assert.equal((await client.add({ num1: 5, num2: 10, requestId: 'launcher-1' })).sum, '15');
      assert.deepEqual(await waitForTotalCount(totalsUrl, 1, 30_000), { total: '15', count: 1 });

      // What runs is in the run state, for `summa status`.
      const state = await readRunState(dataDir);
      assert.ok(state, 'the run state is written');
      assert.equal(state.topology, 'single');
      assert.deepEqual(state.components.map((c) => `${c.role}:${c.name}`), [
        'postgres-primary:postgres-primary',
        'kafka-broker:kafka-1',
        'calculator:calculator',
        'relay:relay',
        'totals:totals',
      ]);
      assert.deepEqual(state.components.find((c) => c.name === 'calculator')!.ports, [ports[3], ports[4]]);

      // The services run as they ship: compiled by the build `npm start` ran, with node and its
      // flags for the services (as the image's entrypoint gives them), no loader.
      for (const role of ['calculator', 'relay', 'totals']) {
        const { pid } = state.components.find((c) => c.role === role)!;
        const { argv, nodeOptions } = startedAs(pid!);
        assert.deepEqual(argv.slice(1), [...SERVICE_NODE_FLAGS, path.join(repoRoot, 'dist', role, 'main.js')], `${role} runs ${JSON.stringify(argv)}`);
        assert.doesNotMatch(`${argv.join(' ')} ${nodeOptions}`, /tsx/, `${role} has no TypeScript loader`);
      }

      // A second start on the same data is refused while this one runs.
      const second = new Launcher(env);
      assert.equal(await second.exited, 1, second.output);
      assert.match(second.output, /Summa is already running from .* \(launcher pid \d+\)/);

      // A service killed outright comes back by itself, and nothing is counted twice.
      const totals = processesOf(dataDir).filter((p) => p.command.includes('dist/totals/main.js'));
      assert.equal(totals.length, 1, JSON.stringify(processesOf(dataDir)));
      assert.equal(state.components.find((c) => c.name === 'totals')!.pid, totals[0]!.pid);
      process.kill(totals[0]!.pid, 'SIGKILL');
      await first.waitFor('service exited; restarting it in 1s', 10_000);
      await first.waitFor('service restarted', 60_000);
      // The launcher logs the restart before its write of the run state is done.
      let restarted: number | null = null;
      for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(100)) {
        restarted = (await readRunState(dataDir))!.components.find((c) => c.name === 'totals')!.pid;
        if (restarted !== null && restarted !== totals[0]!.pid) break;
      }
      assert.ok(restarted !== null && restarted !== totals[0]!.pid, `the run state has the new pid (${restarted})`);
      assert.ok(processesOf(dataDir).some((p) => p.pid === restarted));
      assert.equal((await client.add({ num1: -3, num2: 1, requestId: 'launcher-2' })).sum, '-2');
      assert.deepEqual(await waitForTotalCount(totalsUrl, 2, 60_000), { total: '13', count: 2 });
    } finally {
      client.close();
    }

    assert.equal(await first.interrupt(), 0, first.output);
    assert.match(first.output, /stopping Summa/);
    await sleep(500);
    assert.deepEqual(processesOf(dataDir), [], 'the services, PostgreSQL and Kafka stopped with it');
    for (const port of ports) assert.equal(await listening(port), false, `port ${port} is closed`);
    assert.equal(await readRunState(dataDir), null, 'the run state is gone with it');

    // The next start finds the same total and the same idempotency records.
    const second = new Launcher(env);
    try {
      await second.waitFor('Summa is running.', 180_000);
      assert.deepEqual(await waitForTotalCount(totalsUrl, 0), { total: '13', count: 2 });
      const again = new CalculatorClient(grpcAddress);
      try {
        assert.deepEqual(await again.add({ num1: 5, num2: 10, requestId: 'launcher-1' }), { sum: '15', request_id: 'launcher-1', replayed: true });
      } finally {
        again.close();
      }

      // docker stop, systemd and supervisors signal the whole process group at once: the services,
      // PostgreSQL and Kafka get SIGTERM together with the launcher, and everything still stops.
      // The launcher itself (its own process group), not the wrapper that installs and starts it.
      const launcher = processesOf(dataDir).find((p) => p.command.includes('--import tsx') && p.command.includes('tools/local-stack/launcher.ts'));
      assert.ok(launcher, JSON.stringify(processesOf(dataDir)));
      process.kill(-launcher.pid, 'SIGTERM');
      const outcome = await Promise.race([second.exited, sleep(30_000).then(() => 'still running after 30 s')]);
      assert.equal(outcome, 0, second.output);
      await sleep(500);
      assert.deepEqual(processesOf(dataDir), [], 'the services, PostgreSQL and Kafka stopped with it');
    } finally {
      if (second.child.exitCode === null) await second.interrupt();
    }
  });
});

describe('npm start when it cannot start', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase('launcher');
  });
  after(async () => {
    await database?.drop();
  });

  it('stops at once with the reason when a port is taken, rather than restarting forever', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const takenPort = (taken.address() as net.AddressInfo).port;
    try {
      const [grpc, relayHttp, totalsHttp] = await Promise.all([freePort(), freePort(), freePort()]);
      const launcher = new Launcher({
        DATABASE_URL: database.url,
        KAFKA_BROKERS: testKafkaBrokers().join(','),
        CALCULATOR_GRPC_PORT: String(grpc),
        CALCULATOR_HTTP_PORT: String(takenPort),
        RELAY_HTTP_PORT: String(relayHttp),
        TOTALS_HTTP_PORT: String(totalsHttp),
      });
      const startedAt = Date.now();
      assert.equal(await launcher.exited, 1, launcher.output);
      assert.ok(Date.now() - startedAt < 60_000, 'it gave up without waiting out its start-up timeout');
      assert.match(launcher.output, new RegExp(`EADDRINUSE: address already in use 127\\.0\\.0\\.1:${takenPort}`));
      assert.match(launcher.output, /Summa did not start: calculator exited during start-up/);
      assert.doesNotMatch(launcher.output, /restarting it/);
      for (const port of [grpc, relayHttp, totalsHttp]) assert.equal(await listening(port), false, `port ${port} is closed`);
    } finally {
      taken.close();
    }
  });
});

describe('embedded PostgreSQL in a folder only its owner may enter', () => {
  it('as root, refuses at once and names the folder and the fix; otherwise starts', { timeout: 60_000 }, async () => {
    const privateDir = await mkdtemp(path.join(os.tmpdir(), 'summa-private-')); // mode 0700
    try {
      const starting = startPostgresServer({ dataDir: path.join(privateDir, 'postgres'), port: await freePort() });
      if (process.getuid?.() === 0) {
        await assert.rejects(starting, (error: Error) => {
          assert.match(error.message, /as root, PostgreSQL runs as the user "postgres", which cannot enter /);
          assert.ok(error.message.includes(`chmod o+x ${privateDir}`), error.message);
          return true;
        });
      } else {
        await (await starting).stop();
      }
    } finally {
      await rm(privateDir, { recursive: true, force: true });
    }
  });
});

