// The Settings page in real Chromium against the real headless server started the way `mlx-bar
// serve` starts it (parseServeArgs: flag + env + config.json, then startServe on a tiny model), so
// the page edits settings over HTTP: the stored values load (the key masked, overrides named), a
// bad value is flagged in the form, a save the server refuses shows its issue inline and writes
// nothing, the fixed save lands in config.json, maxConcurrent applies at once and the page says a
// restart applies the rest.
// Screenshots go to test-results/ as artifacts.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, ConsoleMessage } from 'playwright-core';
import { parseServeArgs } from '../../main/cli/serve.ts';
import { startServe, type RunningServe, type ServeOptions } from '../../main/core/serve.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { ensureRendererBuilt, repoRoot } from './build-once.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';

const shots = path.join(repoRoot, 'test-results');
const missing = chromiumMissing();
const LAUNCH_KEY = 'launch-key-0123456789';
const STORED_KEY = 'stored-key-e2e-98765';

describe('Settings page in Chromium saves over HTTP on the real server', { skip: missing ?? false, timeout: 420_000 }, () => {
  let root = '';
  let file = '';
  let running: RunningServe | null = null;
  let browser: Browser | null = null;
  const disk = () => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;

  before(async () => {
    mkdirSync(shots, { recursive: true });
    await ensureRendererBuilt(); // startServe serves dist/renderer
    root = mkdtempSync(path.join(tmpdir(), 'mlxbar-settings-e2e-'));
    const dataDir = path.join(root, 'data');
    mkdirSync(dataDir, { recursive: true });
    file = path.join(dataDir, 'config.json');
    writeFileSync(file, JSON.stringify({ maxConcurrent: 2, apiKey: STORED_KEY }, null, '\t'));
    const model = await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 });
    const opts = (await parseServeArgs(['--model', model, '--data-dir', dataDir, '--port', '0', '--api-key', LAUNCH_KEY], { MLXBAR_MAX_QUEUE: '5' })) as ServeOptions;
    running = await startServe({ ...opts, idleUnloadMs: 0 }, () => {});
    browser = await launchChromium();
  }, { timeout: 300_000 });

  after(async () => {
    await browser?.close().catch(() => {});
    await running?.stop().catch(() => {});
    if (root) rmSync(root, { recursive: true, force: true });
  }, { timeout: 60_000 });

  test('load, flag a bad value, refused save shown inline, fixed save written to config.json with the restart note', { timeout: 300_000 }, async () => {
    const context = await browser!.newContext({ viewport: { width: 1280, height: 1000 }, colorScheme: 'light' });
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      let refusedSaves = 0;
      page.on('console', (m: ConsoleMessage) => {
        if (/status of 401/.test(m.text())) return; // before the key is entered
        if (/status of 400/.test(m.text())) { refusedSaves++; return; } // Chromium logs the refused PUT
        if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(`console.${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));

      await page.goto(`${running!.url}/dashboard/#/settings`, { waitUntil: 'load' });
      await page.getByTestId('key-prompt').waitFor({ timeout: 30_000 });
      await page.getByLabel('API key').first().fill(LAUNCH_KEY);
      await page.getByRole('button', { name: 'Connect' }).click();

      // ---- the stored values, over HTTP (not read-only), the key masked, overrides named
      const maxConcurrent = page.getByTestId('setting-maxConcurrent');
      await page.waitForFunction(() => (document.querySelector('[data-testid="setting-maxConcurrent"]') as HTMLInputElement | null)?.value === '2', null, { timeout: 30_000 });
      assert.equal(await page.getByTestId('settings-readonly').count(), 0);
      assert.equal(await page.getByTestId('setting-apiKey').inputValue(), '', 'the stored key never reaches the page');
      assert.match((await page.getByTestId('setting-apiKey').getAttribute('placeholder')) ?? '', /stored/);
      assert.ok(!(await page.content()).includes(STORED_KEY));
      assert.match((await page.locator('[data-pointer="/maxQueue"] [data-testid="field-override"]').textContent()) ?? '', /MLXBAR_MAX_QUEUE/);
      assert.match((await page.locator('[data-pointer="/port"] [data-testid="field-override"]').textContent()) ?? '', /--port/);
      assert.equal(await page.getByTestId('settings-restart-note').count(), 0, 'nothing pending yet');

      // ---- a bad value is flagged before saving
      await maxConcurrent.fill('99');
      assert.match((await page.locator('[data-pointer="/maxConcurrent"] [data-testid="field-error"]').textContent()) ?? '', /16/);
      assert.equal(await page.getByTestId('settings-save').isDisabled(), true, 'cannot save invalid settings');

      // ---- a save the server refuses (network host, key removed): its issue inline, nothing written
      const before = readFileSync(file, 'utf8');
      await maxConcurrent.fill('3');
      await page.getByTestId('setting-host').fill('0.0.0.0');
      await page.getByTestId('settings-clear-api-key').check();
      assert.equal(await page.getByTestId('field-error').count(), 0, 'valid for the schema');
      await page.getByTestId('settings-save').click();
      const hostError = page.locator('[data-pointer="/host"] [data-testid="field-error"]');
      await hostError.waitFor({ timeout: 30_000 });
      assert.match((await hostError.textContent()) ?? '', /API key/);
      assert.equal(readFileSync(file, 'utf8'), before, 'nothing written');
      await page.screenshot({ path: path.join(shots, 'settings-http-refused.png'), fullPage: true });

      // ---- fixed: saved to config.json; maxConcurrent applies at once, the page says a restart applies the rest
      await page.getByTestId('setting-defaultMaxTokens').fill('1024');
      await page.getByTestId('setting-host').fill('127.0.0.1');
      await page.getByTestId('settings-clear-api-key').uncheck();
      assert.equal(await page.getByTestId('field-error').count(), 0);
      await page.getByTestId('settings-save').click();
      const note = page.getByTestId('settings-restart-note');
      await note.waitFor({ timeout: 30_000 });
      const noteText = (await note.textContent()) ?? '';
      assert.match(noteText, /Saved/);
      assert.match(noteText, /Applied now: Concurrent generations\./i);
      assert.match(noteText, /restart mlx-bar serve to apply: Default max tokens\./i);
      const saved = disk();
      assert.equal(saved.maxConcurrent, 3);
      assert.equal(saved.defaultMaxTokens, 1024);
      assert.equal(saved.host, '127.0.0.1');
      assert.equal(saved.apiKey, STORED_KEY, 'the empty key field kept the stored key');
      assert.equal(await maxConcurrent.inputValue(), '3');
      assert.equal(await page.getByTestId('settings-save').isDisabled(), true, 'nothing unsaved');
      await page.screenshot({ path: path.join(shots, 'settings-http-saved.png'), fullPage: true });

      // ---- a reload still shows what waits for a restart
      await page.reload({ waitUntil: 'load' });
      await page.getByTestId('settings-restart-note').waitFor({ timeout: 30_000 });
      const reloaded = (await page.getByTestId('settings-restart-note').textContent()) ?? '';
      assert.match(reloaded, /not in effect yet.*Default max tokens/);
      assert.doesNotMatch(reloaded, /Concurrent generations/, 'maxConcurrent is in effect');

      assert.equal(refusedSaves, 1, 'one 400: the refused save');
      assert.deepEqual(problems, [], 'no console errors, page errors or CSP violations');
    } finally {
      await context.close().catch(() => {});
    }
  });
});
