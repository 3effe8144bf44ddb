import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/platform/logger.ts';
import { Supervisor, type RunningProcess } from '../../tools/local-stack/supervisor.ts';

/** A stand-in process: exits when told to. */
function fakeProcess(pid: number) {
  let exit!: (how: { code: number | null; signal: NodeJS.Signals | null }) => void;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => (exit = resolve));
  const running: RunningProcess = { pid, exited, stop: async () => exit({ code: 0, signal: null }) };
  return { running, kill: () => exit({ code: null, signal: 'SIGKILL' }) };
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(check());
};

describe('the launcher supervisor', () => {
  const logger = createLogger('test', { LOG_LEVEL: 'silent' });

  it('restarts a process that exits once the system has started, with its new pid', async () => {
    const started: ReturnType<typeof fakeProcess>[] = [];
    let changes = 0;
    const supervisor = new Supervisor({ logger, onChange: () => changes++, restartDelayMs: 1 });
    await supervisor.start({ name: 'calculator-1', start: async () => started[started.push(fakeProcess(100 + started.length)) - 1]!.running });
    supervisor.restartOnExit();
    assert.equal(supervisor.pid('calculator-1'), 100);
    started[0]!.kill();
    await until(() => supervisor.pid('calculator-1') === 101);
    assert.ok(changes >= 3, 'started, exited, restarted');
    await supervisor.stop();
    assert.equal(supervisor.pid('calculator-1'), null);
  });

  it('does not restart during start-up, but once it is over, one that exited meanwhile', async () => {
    let starts = 0;
    const first = fakeProcess(1);
    const supervisor = new Supervisor({ logger, onChange: () => {}, restartDelayMs: 1 });
    await supervisor.start({ name: 'relay', start: async () => (++starts === 1 ? first.running : fakeProcess(2).running) });
    first.kill();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(starts, 1);
    assert.equal(supervisor.pid('relay'), null);
    supervisor.restartOnExit();
    await until(() => supervisor.pid('relay') === 2);
    await supervisor.stop();
  });

  it('restarts nothing once stopping', async () => {
    let starts = 0;
    const first = fakeProcess(1);
    const supervisor = new Supervisor({ logger, onChange: () => {}, restartDelayMs: 1 });
    await supervisor.start({ name: 'totals', start: async () => (starts++, first.running) });
    supervisor.restartOnExit();
    await supervisor.stop();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(starts, 1);
    assert.equal(supervisor.pid('totals'), null);
  });

  it('a stop waits for a restart under way and stops what it started', async () => {
    const first = fakeProcess(1);
    const second = fakeProcess(2);
    let stoppedSecond = false;
    let release!: () => void;
    const ready = new Promise<void>((resolve) => (release = resolve));
    let starts = 0;
    const supervisor = new Supervisor({ logger, onChange: () => {}, restartDelayMs: 1 });
    await supervisor.start({
      name: 'calculator-2',
      start: async () => {
        if (++starts === 1) return first.running;
        await ready;
        return { ...second.running, stop: async () => void (stoppedSecond = true) };
      },
    });
    supervisor.restartOnExit();
    first.kill();
    await until(() => starts === 2);
    const stopping = supervisor.stop();
    release();
    await stopping;
    assert.ok(stoppedSecond);
    assert.equal(supervisor.pid('calculator-2'), null);
  });

  it('keeps trying a restart that fails, waiting longer each time', async () => {
    let attempts = 0;
    const first = fakeProcess(1);
    const supervisor = new Supervisor({ logger, onChange: () => {}, restartDelayMs: 1, maxRestartDelayMs: 4 });
    await supervisor.start({
      name: 'totals',
      start: async () => {
        attempts++;
        if (attempts === 1) return first.running;
        if (attempts < 4) throw new Error('port in use');
        return fakeProcess(4).running;
      },
    });
    supervisor.restartOnExit();
    first.kill();
    await until(() => supervisor.pid('totals') === 4);
    assert.equal(attempts, 4);
    await supervisor.stop();
  });
});
