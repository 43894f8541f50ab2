// Remote models in the dashboard, in real Chromium against the real headless server (`startServe`
// on a tiny random model) whose settings name two remote models: one served by the tests' fake
// OpenAI upstream, one pointing at a port nobody listens on (its circuit breaker opens).
//  - Dashboard: the per-upstream panel (circuit state, requests, latency / TTFT P50·P95·P99,
//    tokens/s, errors by code) and the `upstream_down` degradation badge and banner;
//  - Models page: both listed with a "remote" badge and their health, no Load button;
//  - no console errors or CSP violations.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import type { Browser, ConsoleMessage } from 'playwright-core';
import { serveOptionsFor, startServe, type RunningServe } from '../../main/core/serve.ts';
import { DEFAULT_SETTINGS } from '../../main/settings/schema.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { startFakeUpstream, type FakeUpstream } from '../server/remote/fake-upstream.ts';
import { ensureRendererBuilt, repoRoot } from './build-once.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';

const shots = path.join(repoRoot, 'test-results');
const missing = chromiumMissing();

describe('remote models in the dashboard (Chromium, real server)', { skip: missing ?? false, timeout: 420_000 }, () => {
  let root = '';
  let running: RunningServe | null = null;
  let browser: Browser | null = null;
  let fake: FakeUpstream | null = null;
  let pinging = true;
  let pinger: Promise<void> = Promise.resolve();

  before(async () => {
    mkdirSync(shots, { recursive: true });
    await ensureRendererBuilt();
    root = mkdtempSync(path.join(tmpdir(), 'mlxbar-remote-ui-'));
    const dataDir = path.join(root, 'data');
    const modelDir = await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 }, path.join(dataDir, 'models', 'tiny-local'));
    fake = await startFakeUpstream();
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const deadPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const remotes = [
      { id: 'gpu-box', baseURL: fake.baseURL },
      { id: 'gone-box', baseURL: `http://127.0.0.1:${deadPort}/v1` },
    ];
    running = await startServe(serveOptionsFor(modelDir, dataDir, { settings: { ...DEFAULT_SETTINGS, dataDir, contextLength: 1024, remotes }, idleUnloadMs: 0 }), () => {});
    browser = await launchChromium();
  }, { timeout: 300_000 });

  after(async () => {
    pinging = false;
    await pinger;
    await browser?.close().catch(() => {});
    await running?.stop().catch(() => {});
    await fake?.close().catch(() => {});
    if (root) rmSync(root, { recursive: true, force: true });
  }, { timeout: 60_000 });

  test('per-upstream panel, upstream_down badge and banner, remote rows on the Models page', { timeout: 300_000 }, async () => {
    const client = new OpenAI({ baseURL: `${running!.url}/v1`, apiKey: 'none', maxRetries: 0 });
    // Three streamed answers through the healthy upstream (several chunks each: TTFT and tokens/s).
    fake!.setModes({ kind: 'ok', text: 'one two three four ', chunks: 8 });
    for (let i = 0; i < 3; i++) {
      const stream = await client.chat.completions.create({ model: 'gpu-box', messages: [{ role: 'user', content: `hello ${i}` }], stream: true });
      for await (const _ of stream) void _;
    }
    // The dead upstream: refused connections, again and again, keep its circuit open (each
    // half-open probe fails and reopens it) for as long as the page is checked.
    const hitDead = () => client.chat.completions.create({ model: 'gone-box', messages: [{ role: 'user', content: 'x' }] }).catch(() => null);
    for (let i = 0; i < 3; i++) await hitDead();
    pinger = (async () => {
      while (pinging) {
        await hitDead();
        await new Promise((r) => setTimeout(r, 300));
      }
    })();

    const context = await browser!.newContext({ viewport: { width: 1400, height: 1000 }, colorScheme: 'light' });
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('console', (m: ConsoleMessage) => {
        if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(`console.${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      await page.goto(`${running!.url}/dashboard/`, { waitUntil: 'load' });

      // ---- dashboard: one row per upstream
      const up = page.locator('[data-testid="upstream-row"][data-upstream="gpu-box"]');
      await up.waitFor({ timeout: 30_000 });
      assert.equal(await up.getAttribute('data-state'), 'closed');
      assert.equal(await up.getByTestId('upstream-state').textContent(), 'up');
      assert.equal(await up.getByTestId('upstream-requests').textContent(), '3');
      assert.match((await up.getByTestId('upstream-latency').textContent()) ?? '', /^[\d.]+ m?s · [\d.]+ m?s · [\d.]+ m?s$/);
      assert.match((await up.getByTestId('upstream-ttft').textContent()) ?? '', /ms · .* · /);
      assert.match((await up.getByTestId('upstream-tps').textContent()) ?? '', /^[\d,]+\.\d$/);
      assert.equal(await up.getByTestId('upstream-errors').textContent(), '0');

      const down = page.locator('[data-testid="upstream-row"][data-upstream="gone-box"][data-state="open"]');
      await down.waitFor({ timeout: 30_000 });
      assert.equal(await down.getByTestId('upstream-state').textContent(), 'down');
      assert.match((await down.getByTestId('upstream-errors').textContent()) ?? '', /upstream_unavailable×\d+/);
      assert.match((await down.getByTestId('upstream-errors').textContent()) ?? '', /upstream_down×\d+/);
      assert.equal(await down.getByTestId('upstream-latency').textContent(), '—', 'no finished request, no latency');

      // ---- degradation: upstream_down, with the model named
      await page.locator('[data-testid="degradation-badge"][data-state="upstream_down"]').waitFor({ timeout: 30_000 });
      assert.match((await page.getByTestId('degradation-badge').textContent()) ?? '', /Remote model down/);
      assert.match((await page.getByTestId('degradation-banner').textContent()) ?? '', /"gone-box" unavailable.*local models keep serving/);
      await page.screenshot({ path: path.join(shots, 'dashboard-upstreams.png'), fullPage: true });

      // ---- Models page: remote rows with a badge and their health, no Load button
      await page.getByTestId('nav-models').click();
      const gpu = page.locator('[data-testid="model-row"][data-model="gpu-box"][data-remote="true"]');
      await gpu.waitFor({ timeout: 30_000 });
      assert.equal(await gpu.getByTestId('remote-badge').textContent(), 'remote');
      assert.equal(await gpu.getByTestId('remote-health').textContent(), 'up');
      assert.equal(await gpu.getByTestId('load-model').count(), 0);
      const gone = page.locator('[data-testid="model-row"][data-model="gone-box"][data-remote="true"]');
      // Its circuit is open except for the moment a half-open probe is out (then "probing"): Refresh until seen down.
      for (let i = 0; i < 20 && (await gone.getByTestId('remote-health').textContent()) !== 'down'; i++) {
        await page.getByTestId('models-library').getByRole('button', { name: 'Refresh' }).click();
        await page.waitForTimeout(250);
      }
      assert.equal(await gone.getByTestId('remote-health').textContent(), 'down');
      const local = page.locator('[data-testid="model-row"][data-model="tiny-local"]');
      assert.equal(await local.getAttribute('data-loaded'), 'true');
      assert.equal(await local.getByTestId('remote-badge').count(), 0);
      await page.screenshot({ path: path.join(shots, 'models-remote.png'), fullPage: true });

      assert.deepEqual(problems, []);
    } finally {
      await context.close().catch(() => {});
    }
  });
});
