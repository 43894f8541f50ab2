// The renderer in app mode (window.mlxBar present) in real Chromium, with the shell's real
// main-side code behind the bridge: preload/bridge.ts builds the API in the page, Playwright's
// exposeBinding stands in for Electron's IPC transport, and on the other end the real GuardedIpc
// (sender origin + top-frame + argument checks against the page's actual frame), the real IPC
// handlers, AppController, SettingsService (conf writes the same file electron-store would) and
// startCoreFromSettings. Electron itself cannot run here; this is the closest faithful check of
// the invalid-settings flow: the page opens on Settings showing main's problems, start is refused,
// fixing + saving writes a valid config.json, and the server error is shown readably.
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { build } from 'esbuild';
import type { ConsoleMessage } from 'playwright-core';
import { loadSettings } from '../../main/settings/load.ts';
import { openSettingsStore } from '../../main/settings/store.ts';
import { AppController } from '../../main/shell/controller.ts';
import { readableStartError, startCoreFromSettings } from '../../main/shell/core.ts';
import { GuardedIpc } from '../../main/shell/ipc-guard.ts';
import { registerIpcHandlers } from '../../main/shell/ipc-handlers.ts';
import { SettingsService } from '../../main/settings/service.ts';
import { APP_CSP, mimeFor, resolveAppAsset } from '../../main/shell/url-policy.ts';
import { PUSH_CHANNELS } from '../../preload/api.ts';
import type { StoredSettings } from '../../main/settings/schema.ts';
import { ensureRendererBuilt, repoRoot } from './build-once.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';

const missing = chromiumMissing();

async function bridgeScript(): Promise<string> {
  const r = await build({
    stdin: {
      contents: `
        import { createBridge } from './preload/bridge.ts';
        const listeners = new Map();
        globalThis.__mlxbarEmit = (channel, value) => { for (const l of listeners.get(channel) ?? []) l({}, value); };
        globalThis.mlxBar = createBridge({
          invoke: (channel, ...args) => globalThis.__mlxbarInvoke(channel, args),
          on: (channel, l) => { if (!listeners.has(channel)) listeners.set(channel, new Set()); listeners.get(channel).add(l); },
          removeListener: (channel, l) => { listeners.get(channel)?.delete(l); },
        });`,
      resolveDir: repoRoot,
      loader: 'ts',
    },
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    logLevel: 'silent',
  });
  return r.outputFiles[0].text;
}

test('app mode: invalid settings are shown from main, fixed in the form, saved; start errors are readable', { skip: missing ?? false, timeout: 240_000 }, async () => {
  const root = await ensureRendererBuilt();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mlxbar-bridge-'));
  writeFileSync(path.join(dataDir, 'config.json'), JSON.stringify({ port: 70000, logLevel: 'loud' }));
  const server = http.createServer((req, res) => {
    // The same mapping and CSP the app:// protocol handler uses in Electron.
    const file = resolveAppAsset(root, `mlxbar://app${new URL(req.url ?? '/', 'http://x').pathname}`);
    try {
      const body = readFileSync(file ?? '');
      res.writeHead(200, { 'content-type': mimeFor(file!), 'content-security-policy': APP_CSP });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  const controller = new AppController({
    settings: new SettingsService({
      dataDir,
      write: (v: StoredSettings) => {
        openSettingsStore(dataDir).store = v;
      },
    }),
    startCore: (s) => startCoreFromSettings(s),
    describeError: (e, s) => readableStartError(e, s),
  });
  const handlers = new Map<string, (event: unknown, ...args: unknown[]) => Promise<unknown>>();
  const refused: string[] = [];
  const ipc = new GuardedIpc({ handle: (c: string, h: never) => void handlers.set(c, h), removeHandler: (c: string) => void handlers.delete(c) } as never, { appOrigin: origin, onRefused: (c, r) => refused.push(`${c}: ${r}`) });
  const copied: string[] = [];
  registerIpcHandlers(ipc, { controller, clipboard: { writeText: (t) => void copied.push(t) }, openExternal: async () => {} });

  const browser = await launchChromium();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.exposeBinding('__mlxbarInvoke', async (source, channel: string, args: unknown[]) => {
      const h = handlers.get(channel);
      if (!h) throw new Error('Request refused');
      // The sender as Electron would describe it: the calling frame's URL and whether it is a sub-frame.
      return h({ senderFrame: { url: source.frame.url(), parent: source.frame.parentFrame() ? {} : null } }, ...args);
    });
    await context.addInitScript({ content: await bridgeScript() });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m: ConsoleMessage) => { if (m.type() === 'error') problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(e.message));
    controller.on('state', (st) => void page.evaluate(([c, v]) => (globalThis as unknown as { __mlxbarEmit(c: string, v: unknown): void }).__mlxbarEmit(c, v), [PUSH_CHANNELS.appState, st] as const).catch(() => {}));

    await page.goto(`${origin}/index.html#/settings`);
    await page.getByTestId('settings-invalid-banner').waitFor({ timeout: 20_000 });
    assert.equal(await page.getByTestId('feed-status').textContent(), 'live (app)');
    assert.match((await page.locator('[data-pointer="/port"] [data-testid="field-error"]').textContent()) ?? '', /65535/);
    assert.match((await page.locator('[data-pointer="/logLevel"] [data-testid="field-error"]').textContent()) ?? '', /must be one of/);
    assert.equal(await page.getByTestId('setting-port').inputValue(), '70000', 'the form shows what the file says');
    assert.equal(await page.getByTestId('server-status').textContent(), 'stopped');
    mkdirSync(path.join(repoRoot, 'test-results'), { recursive: true });
    await page.screenshot({ path: path.join(repoRoot, 'test-results', 'app-settings-invalid.png'), fullPage: true });

    // The main side refuses to start with invalid settings, whatever the page does.
    const st = await page.evaluate(() => (globalThis as unknown as { mlxBar: { startServer(): Promise<{ server: string; error: string }> } }).mlxBar.startServer());
    assert.equal(st.server, 'error');
    assert.match(st.error, /settings are invalid/);
    // Bad arguments are refused before any handler runs.
    await assert.rejects(page.evaluate(() => (globalThis as unknown as { mlxBar: { saveSettings(v: unknown): Promise<unknown> } }).mlxBar.saveSettings('port=1')), /Invalid arguments/);

    // Fix both fields; save is enabled once the page's own validation passes.
    await page.getByTestId('setting-port').fill('0');
    await page.getByTestId('setting-logLevel').selectOption({ label: 'warn' });
    await page.getByTestId('setting-theme').selectOption({ label: 'dark' });
    assert.equal(await page.getByTestId('field-error').count(), 0);
    await page.getByTestId('settings-save').click();
    await page.getByTestId('settings-invalid-banner').waitFor({ state: 'detached', timeout: 20_000 });
    const onDisk = loadSettings({ dataDir, env: {}, flags: {}, repair: false });
    assert.equal(onDisk.file.status, 'ok');
    assert.equal(onDisk.settings.port, 0);
    assert.equal(onDisk.settings.logLevel, 'warn');
    // The theme setting overrides the (light) system scheme once saved.
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark', null, { timeout: 10_000 });
    assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(15, 18, 24)');

    // Valid settings but no model: the start error reaches the page as one readable line.
    await page.getByTestId('nav-dashboard').click();
    await page.getByRole('button', { name: 'Start' }).click();
    await page.getByRole('alert').filter({ hasText: 'No model selected' }).waitFor({ timeout: 20_000 });
    assert.equal(await page.getByTestId('server-status').textContent(), 'error');
    assert.equal(await page.getByTestId('degradation-badge').textContent(), 'Server error');
    await page.screenshot({ path: path.join(repoRoot, 'test-results', 'app-dark-start-error.png'), fullPage: true });

    assert.deepEqual(refused, ['mlxbar:save-settings: invalid arguments: expected one settings object']);
    assert.deepEqual(problems.filter((p) => !/Request refused|Invalid arguments/.test(p)), []);
    await context.close();
  } finally {
    await browser.close().catch(() => {});
    await controller.dispose().catch(() => {});
    server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
