// The dashboard says when the DEMO model is loaded, and only then (#11 item 16), in real Chromium
// against a real `mlx-bar serve --demo` (child process, temp data folder that also holds a tiny
// real-layout model): the DEMO tag is in the header while the demo model serves; after switching to
// the other model (POST /v1/models/load) it is gone; switching back brings it back.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { ensureRendererBuilt } from './build-once.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { killAll, runMlxBar, stopChild } from '../helpers/cli.ts';

const missing = chromiumMissing();
const DEMO_ID = 'mlx-bar-demo-random-weights';
const OTHER = 'tiny-real';

describe('DEMO tag in the dashboard header', { skip: missing ?? false, timeout: 480_000 }, () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-dash-demo-'));
  after(() => {
    killAll();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('shown while the demo model serves, gone after switching to a real-layout model, back after switching back', { timeout: 420_000 }, async () => {
    await ensureRendererBuilt();
    const dataDir = path.join(tmp, 'data');
    await buildTinyModel({ family: 'qwen3', hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, layers: 1 }, path.join(dataDir, 'models', OTHER));
    const serve = runMlxBar(['serve', '--demo', '--port', '0', '--data-dir', dataDir]);
    let browser: Browser | null = null;
    try {
      const url = (await serve.waitFor(/MLX Bar listening on (http:\/\/127\.0\.0\.1:\d+)/))[1];
      const load = async (model: string) => {
        const r = await fetch(`${url}/v1/models/load`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model }) });
        assert.equal(r.status, 200, await r.text());
      };
      browser = await launchChromium();
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${url}/dashboard/`, { waitUntil: 'load' });

      const tag = page.getByTestId('model-demo');
      await tag.waitFor({ state: 'visible', timeout: 60_000 });
      assert.match((await tag.textContent()) ?? '', /DEMO/);
      assert.equal(await page.getByTestId('model').textContent(), DEMO_ID);

      await load(OTHER);
      await page.getByTestId('model').filter({ hasText: OTHER }).waitFor({ timeout: 60_000 });
      await tag.waitFor({ state: 'detached', timeout: 30_000 });
      assert.equal(await tag.count(), 0, 'no DEMO tag for a model that is not the demo');

      await load(DEMO_ID);
      await page.getByTestId('model').filter({ hasText: DEMO_ID }).waitFor({ timeout: 60_000 });
      await tag.waitFor({ state: 'visible', timeout: 30_000 });
      assert.deepEqual(errors, []);
    } finally {
      await browser?.close().catch(() => {});
      await stopChild(serve);
    }
  });
});
