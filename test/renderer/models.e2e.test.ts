// The Models page in real Chromium against the real headless server (`startServe`: supervised
// engine on a tiny random model, library mode) with the local fake hub standing in for Hugging
// Face (HF_ENDPOINT): the library is listed with the loaded badge, a malformed repo id is refused
// in the form, a download shows a live progress bar and completes, the new model appears and
// "Load" switches the served model. No console errors or CSP violations throughout.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, ConsoleMessage } from 'playwright-core';
import { serveOptionsFor, startServe, type RunningServe } from '../../main/core/serve.ts';
import { DEFAULT_SETTINGS } from '../../main/settings/schema.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { startFakeHub, type FakeHub } from '../library/fake-hub.ts';
import { ensureRendererBuilt, repoRoot } from './build-once.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';

const shots = path.join(repoRoot, 'test-results');
const missing = chromiumMissing();
const START = 'tiny-start';
const REPO = 'test-org/tiny-e2e';
const QUEUE_REPOS = ['test-org/e2e-q1', 'test-org/e2e-q2', 'test-org/e2e-q3'];

describe('Models page in Chromium on the real server', { skip: missing ?? false, timeout: 420_000 }, () => {
  let root = '';
  let hub: FakeHub | null = null;
  let running: RunningServe | null = null;
  let browser: Browser | null = null;
  const savedEndpoint = process.env.HF_ENDPOINT;

  before(async () => {
    mkdirSync(shots, { recursive: true });
    await ensureRendererBuilt(); // startServe serves dist/renderer
    root = mkdtempSync(path.join(tmpdir(), 'mlxbar-models-e2e-'));
    const dataDir = path.join(root, 'data');
    const small = { family: 'qwen3' as const, hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64 };
    await buildTinyModel(small, path.join(dataDir, 'models', START));
    hub = await startFakeHub();
    const hubModel = await buildTinyModel({ ...small, layers: 1 });
    hub.addRepo(REPO, hubModel);
    QUEUE_REPOS.forEach((r, i) => hub!.addRepo(r, hubModel, { commit: String(i + 5).repeat(40) }));
    // Slow enough (~11 MB tokenizer at 3 MB/s) that the page shows a running progress bar.
    hub.faults.throttleBytesPerSec = 3 * 1024 * 1024;
    process.env.HF_ENDPOINT = hub.endpoint;
    running = await startServe(
      serveOptionsFor(path.join(dataDir, 'models', START), dataDir, { settings: { ...DEFAULT_SETTINGS, dataDir, contextLength: 2048 }, idleUnloadMs: 0 }),
      () => {},
    );
    browser = await launchChromium();
  }, { timeout: 300_000 });

  after(async () => {
    await browser?.close().catch(() => {});
    await running?.stop().catch(() => {});
    await hub?.close().catch(() => {});
    if (savedEndpoint === undefined) delete process.env.HF_ENDPOINT;
    else process.env.HF_ENDPOINT = savedEndpoint;
    if (root) rmSync(root, { recursive: true, force: true });
  }, { timeout: 60_000 });

  test('lists the library, downloads with a progress bar, loads the new model', { timeout: 300_000 }, async () => {
    const context = await browser!.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('console', (m: ConsoleMessage) => {
        if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(`console.${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));

      await page.goto(`${running!.url}/dashboard/`, { waitUntil: 'load' });
      await page.getByTestId('nav-models').click();
      await page.getByTestId('models-page').waitFor({ timeout: 30_000 });

      // ---- the library: the started model, loaded
      const startRow = page.locator(`[data-testid="model-row"][data-model="${START}"]`);
      await startRow.waitFor({ timeout: 30_000 });
      assert.equal(await startRow.getAttribute('data-loaded'), 'true');
      assert.equal(await startRow.getByTestId('loaded-badge').count(), 1);
      assert.match((await startRow.textContent()) ?? '', /qwen3/);
      assert.equal(await page.locator(`[data-testid="model-row"][data-model="${REPO}"]`).count(), 0);

      // ---- a malformed id is refused before anything starts
      await page.getByTestId('pull-repo').fill('../etc/passwd');
      await page.getByTestId('pull-start').click();
      assert.match((await page.getByTestId('pull-form-error').textContent()) ?? '', /repository id/);

      // ---- download with a live progress bar
      await page.getByTestId('pull-repo').fill(REPO);
      await page.getByTestId('pull-start').click();
      const pull = page.locator(`[data-testid="pull"][data-repo="${REPO}"]`);
      await pull.waitFor({ timeout: 30_000 });
      await pull.getByTestId('pull-progress').waitFor({ timeout: 10_000 });
      // While running, the bar moves (value > 0 at some poll before completion) — or it is already done.
      let sawRunningProgress = false;
      const deadline = Date.now() + 180_000;
      for (;;) {
        const state = await pull.getAttribute('data-state');
        const value = Number(await pull.getByTestId('pull-progress').getAttribute('value'));
        if (state === 'running' && value > 0 && value < 100) sawRunningProgress = true;
        if (state === 'done') break;
        assert.notEqual(state, 'failed', (await pull.textContent()) ?? '');
        if (Date.now() > deadline) assert.fail('the download did not finish');
        await page.waitForTimeout(250);
      }
      assert.ok(sawRunningProgress, 'a partially filled progress bar was shown while downloading');
      assert.equal(Number(await pull.getByTestId('pull-progress').getAttribute('value')), 100);
      await page.screenshot({ path: path.join(shots, 'models-downloaded.png'), fullPage: true });

      // ---- the new model is listed; Load switches to it
      const newRow = page.locator(`[data-testid="model-row"][data-model="${REPO}"]`);
      await newRow.waitFor({ timeout: 30_000 });
      assert.equal(await newRow.getAttribute('data-loaded'), 'false');
      await newRow.getByTestId('load-model').click();
      await page.locator(`[data-testid="model-row"][data-model="${REPO}"][data-loaded="true"]`).waitFor({ timeout: 120_000 });
      assert.equal(await startRow.getAttribute('data-loaded'), 'false');
      const health = (await (await fetch(`${running!.url}/health`)).json()) as { model: string };
      assert.equal(health.model, REPO);
      await page.screenshot({ path: path.join(shots, 'models-loaded.png'), fullPage: true });

      assert.deepEqual(problems, []);
    } finally {
      await context.close().catch(() => {});
    }
  });

  test('a third download waits: shown as queued with a Cancel button that cancels it (#11 item 6)', { timeout: 180_000 }, async () => {
    const context = await browser!.newContext({ viewport: { width: 1280, height: 900 } });
    const api = (method: string, route: string, body?: unknown) =>
      fetch(`${running!.url}${route}`, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
    hub!.faults.throttleBytesPerSec = 128 * 1024; // the two running downloads stay running
    try {
      for (const repo of QUEUE_REPOS) assert.equal((await api('POST', '/v1/models/pull', { repo })).status, 202);
      const page = await context.newPage();
      await page.goto(`${running!.url}/dashboard/#/models`, { waitUntil: 'load' });
      const third = page.locator(`[data-testid="pull"][data-repo="${QUEUE_REPOS[2]}"]`);
      await third.waitFor({ timeout: 30_000 });
      assert.equal(await third.getAttribute('data-state'), 'queued');
      assert.equal(await third.getByTestId('pull-state').textContent(), 'queued');
      assert.match((await third.textContent()) ?? '', /waiting for a download slot/);
      assert.equal(await page.locator('[data-testid="pull"][data-state="running"]').count(), 2);
      await third.getByRole('button', { name: 'Cancel' }).click();
      await page.locator(`[data-testid="pull"][data-repo="${QUEUE_REPOS[2]}"][data-state="cancelled"]`).waitFor({ timeout: 30_000 });
    } finally {
      const list = (await (await api('GET', '/v1/models/pulls')).json()) as { data: Array<{ id: string; state: string }> };
      for (const j of list.data) if (j.state === 'running' || j.state === 'queued') await api('DELETE', `/v1/models/pulls/${j.id}`);
      hub!.faults.throttleBytesPerSec = 3 * 1024 * 1024;
      await context.close().catch(() => {});
    }
  });
});
