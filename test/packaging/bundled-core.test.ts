// The bundled main code (scripts/build-main.mjs output, what app.asar carries) runs the real core
// in plain Node: its serve chunk finds the dashboard at <app>/dist/renderer and the engine
// process entry at dist/main/engine-main.js (plain JS, no tsx), and answers a real chat request on
// a tiny model. Guards the file layout the packaged app depends on.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { ensureMainBuilt, ensureRendererBuilt } from '../renderer/build-once.ts';

test('bundled serve core: dashboard, metrics and a chat completion from dist/main', { timeout: 300_000 }, async () => {
  const [mainDir] = await Promise.all([ensureMainBuilt(), ensureRendererBuilt()]);
  const chunks = readdirSync(mainDir).filter((f) => /^serve-[\w-]+\.js$/.test(f));
  assert.equal(chunks.length, 1, `one serve chunk (lazy-loaded by the shell), no stale ones: ${chunks.join(', ')}`);
  const chunk = chunks[0];
  const mod = (await import(pathToFileURL(path.join(mainDir, chunk)).href)) as typeof import('../../main/core/serve.ts');
  const model = await buildTinyModel({ family: 'qwen3', layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128 });
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mlxbar-bundled-'));
  const opts = { model, host: '127.0.0.1', port: 0, dataDir, apiKey: null, allowedOrigins: [], demo: false, server: { promptInlineMaxChars: 0 }, warnings: [] };
  const running = await mod.startServe(opts as Parameters<typeof mod.startServe>[0], () => {});
  try {
    const page = await fetch(`${running.url}/dashboard/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /Content-Security-Policy" content="default-src 'none'; script-src 'self'/);
    const chat = await fetch(`${running.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: running.engine.model!.id, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
    });
    assert.equal(chat.status, 200, await chat.clone().text());
    const body = (await chat.json()) as { usage: { completion_tokens: number } };
    assert.ok(body.usage.completion_tokens > 0);
    const snap = (await (await fetch(`${running.url}/v1/metrics`)).json()) as { model: { id: string }; latency: { count: number } };
    assert.equal(snap.model.id, running.engine.model!.id);
    assert.equal(snap.latency.count, 1);
    // Every prompt goes to the bundled prompt worker thread here (dist/main/prompt-worker.js): promptInlineMaxChars 0.
    assert.equal(running.server.prompts.stats.worker, 1, 'the chat prompt was rendered in a worker thread');
  } finally {
    await running.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
