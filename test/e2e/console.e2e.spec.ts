import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { readRunState } from '../../src/cli/run-state.ts';
import { repoRoot } from '../../tools/lib/paths.ts';
import { Launcher, processesOf } from '../support/launcher-process.ts';
import { serviceEnvironment } from '../support/service-environment.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-environment.ts';
import { missingTool, requireTool } from '../support/tools.ts';

// Where the screenshot is kept (git-ignored); SUMMA_CONSOLE_SCREENSHOT=docs/console.png refreshes the README's.
const ARTIFACTS = path.join(repoRoot, '.data', 'artifacts');

describe('the console page in a real browser, on `npm start`', { skip: missingTool('chromium'), timeout: 240_000 }, () => {
  let database: TestDatabase;
  let dataDir: string;
  let launcher: Launcher;
  let browser: Browser;
  let page: Page;
  let totalsUrl: string;
  let topic: string;

  before(async () => {
    database = await createTestDatabase('console');
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'summa-console-'));
    await chmod(dataDir, 0o755);
    // The suite's PostgreSQL and Kafka: the launcher starts only the three services.
    const where = await serviceEnvironment({ name: 'console', databaseUrl: database.url, partitions: 2 });
    totalsUrl = where.totalsUrl;
    topic = where.env.KAFKA_TOPIC!;
    launcher = new Launcher({ ...where.env, SUMMA_DATA_DIR: dataDir });
    await launcher.waitFor('Summa is running.', 150_000);
    browser = await chromium.launch({ executablePath: requireTool('chromium'), headless: true, args: ['--no-sandbox'], timeout: 60_000 });
    page = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
    page.setDefaultTimeout(30_000);
  });

  after(async () => {
    await browser?.close();
    if (launcher) {
      launcher.child.kill('SIGINT');
      await Promise.race([launcher.exited, new Promise((resolve) => setTimeout(resolve, 20_000))]);
    }
    if (dataDir) {
      for (const { pid } of processesOf(dataDir)) process.kill(pid, 'SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
    await database?.drop();
  });

  it('shows the live total, sends Adds, traces a request, browses the topic and turns a killed service red', async () => {
    await page.goto(`${totalsUrl}/`);
    await page.getByText(/^Live, updated/).waitFor();
    await page.locator('#total', { hasText: /^0$/ }).waitFor();
    assert.equal(await page.title(), 'Summa console');

    // An Add through the form moves the total.
    await page.getByLabel('First number').fill('5');
    await page.getByLabel('Second number').fill('10');
    await page.getByLabel(/^Request id \(optional/).fill('console-1');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.locator('#add-answer [data-replayed="false"]').waitFor();
    assert.match(await page.locator('#add-answer').innerText(), /Sum 15 under request id console-1/);
    await page.locator('#total', { hasText: /^15$/ }).waitFor();
    await page.locator('#count', { hasText: /^1$/ }).waitFor();
    await page.locator('#latency', { hasText: /^≤ [\d.]+ m?s \/ ≤ [\d.]+ m?s$/ }).waitFor();
    // The calculator answered that Add: its ack latency, read from its /metrics.
    await page.locator('#ack-latency', { hasText: /^≤ [\d.]+ m?s \/ ≤ [\d.]+ m?s$/ }).waitFor();
    // ... and the charts: the applied rate has a point above the baseline.
    await page.waitForFunction(() => {
      const points = document.querySelector('#chart-rates polyline.applied')?.getAttribute('points') ?? '';
      return points.split(' ').some((point) => Number(point.split(',')[1]) < 78);
    });

    // The same id again: the original answer, replayed, not counted again.
    await page.getByRole('button', { name: 'Send' }).click();
    await page.locator('#add-answer [data-replayed="true"]').waitFor();
    assert.match(await page.locator('#add-answer').innerText(), /replayed/);

    // The lookup follows the request to the total.
    await page.getByRole('button', { name: 'Look up' }).click();
    await page.locator('#lookup-answer [data-stage="applied"]').waitFor();
    const trace = await page.locator('#lookup-answer').innerText();
    const [, partition] = /published at partition (\d+), offset \d+/.exec(trace) ?? [];
    assert.ok(partition !== undefined, trace);

    // The topic browser shows the topic, and the record in its partition, decoded.
    await page.getByRole('button', { name: 'Refresh topics' }).click();
    await page.locator(`table[data-topic="${topic}"]`).waitFor();
    await page.getByLabel('Topic', { exact: true }).selectOption(topic);
    await page.getByLabel('Partition', { exact: true }).fill(partition!);
    await page.getByRole('button', { name: 'Show records' }).click();
    const row = page.locator('#records-table tr[data-key="console-1"]');
    await row.waitFor();
    assert.match(await row.innerText(), /"sum": "15"/);

    await mkdir(ARTIFACTS, { recursive: true });
    const screenshot = path.join(ARTIFACTS, 'console.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    // Readable on a phone: nothing wider than the screen but the tables, which scroll in their own box.
    await page.setViewportSize({ width: 390, height: 844 });
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), 390);
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1200, height: 1400 });

    // A killed relay is shown down (while the launcher restarts it).
    await page.locator('#components li[data-component="relay"][data-healthy="true"]').waitFor();
    const state = await readRunState(dataDir);
    const relay = state!.components.find((component) => component.role === 'relay')!;
    process.kill(relay.pid!, 'SIGKILL');
    await page.locator('#components li[data-component="relay"][data-healthy="false"]').waitFor({ timeout: 15_000 });
    const down = path.join(ARTIFACTS, 'console-relay-down.png');
    await page.screenshot({ path: down, fullPage: true });
    if (process.env.SUMMA_CONSOLE_SCREENSHOT) await copyFile(down, path.resolve(repoRoot, process.env.SUMMA_CONSOLE_SCREENSHOT));
  });
});
