// The model library + model manager end to end in the running server (`startServe`: real
// supervised engine process on tiny random-weight models, real Qwen3 tokenizer, real HTTP on
// loopback, the official openai client): /v1/models lists the library, a request's `model`
// switches (single-flight), unknown/path-like names are 404, idle unload stops the engine and the
// next request reloads it, and response-cache hits never cross models.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { serveOptionsFor, startServe, type RunningServe } from '../../main/core/serve.ts';
import { DEFAULT_SETTINGS } from '../../main/settings/schema.ts';
import { managerServerModels } from '../../main/core/server-models.ts';
import { stopServeHard } from '../helpers/stop-serve.ts';

const A = 'tiny-qwen3';
const B = 'tiny-llama';
let root: string;
let dataDir: string;
let running: RunningServe | null = null;
let client: OpenAI;
const events: Array<{ type: string; id: string; reason?: string; loadMs?: number }> = [];

function waitForEvent(type: string, pred: (e: { id: string; reason?: string }) => boolean, timeoutMs = 60_000): Promise<void> {
  const m = running!.models!;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      m.off(type, on);
      reject(new Error(`no ${type} within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (e: { id: string; reason?: string }) => {
      if (!pred(e)) return;
      clearTimeout(t);
      m.off(type, on);
      resolve();
    };
    m.on(type, on);
  });
}

async function chat(model: string, content = 'hi', extra: Record<string, unknown> = {}) {
  const res = await fetch(`${running!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: 4, ...extra }),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
}

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'mlxbar-srvmodels-'));
  dataDir = path.join(root, 'data');
  await buildTinyModel({ family: 'qwen3' }, path.join(dataDir, 'models', A));
  await buildTinyModel({ family: 'llama' }, path.join(dataDir, 'models', B));
  const settings = {
    ...DEFAULT_SETTINGS,
    dataDir,
    contextLength: 2048,
    responseCache: { ...DEFAULT_SETTINGS.responseCache, enabled: true },
  };
  running = await startServe(
    // idleUnloadMs: switched on by the idle test through the manager
    serveOptionsFor(path.join(dataDir, 'models', A), dataDir, { settings, idleUnloadMs: 0 }),
    () => {},
  );
  assert.ok(running.models, 'library mode is on for a ready model folder');
  for (const type of ['loading', 'loaded', 'unloaded']) {
    running.models.on(type, (e: { id: string; reason?: string; loadMs?: number }) => events.push({ type, id: e.id, reason: e.reason, loadMs: e.loadMs }));
  }
  client = new OpenAI({ baseURL: `${running.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
});

after(async () => {
  await stopServeHard(running);
  rmSync(root, { recursive: true, force: true });
});

describe('model library in the running server', { timeout: 600_000 }, () => {
  it('GET /v1/models lists both library models with their fields, and no paths', async () => {
    const res = await fetch(`${running!.url}/v1/models`);
    assert.equal(res.status, 200);
    const raw = await res.text();
    assert.ok(!raw.includes(root), 'no local path in /v1/models');
    assert.ok(!raw.includes('"dir"'));
    const body = JSON.parse(raw);
    const ids = body.data.map((m: { id: string }) => m.id);
    assert.deepEqual(ids.sort(), [B, A].sort());
    const byId = Object.fromEntries(body.data.map((m: { id: string }) => [m.id, m]));
    assert.equal(byId[A].object, 'model');
    assert.equal(byId[A].owned_by, 'mlx-bar');
    assert.equal(typeof byId[A].created, 'number');
    assert.equal(byId[A].architecture, 'qwen3');
    assert.equal(byId[B].architecture, 'llama');
    assert.ok(byId[B].sizeBytes > 0);
    assert.ok('quantization' in byId[B]);
    assert.equal(typeof byId[B].fitsInMemory.fits, 'boolean');
    assert.equal(byId[A].loaded, true);
    assert.equal(byId[B].loaded, false);
    // The official client sees the same list.
    const listed = [];
    for await (const m of client.models.list()) listed.push(m.id);
    assert.deepEqual(listed.sort(), [B, A].sort());
  });

  it('a request for model B switches the engine to it and answers 200 (openai client)', async () => {
    const before = running!.engine.model!;
    const r = await client.chat.completions.create({ model: B, messages: [{ role: 'user', content: 'hello' }], max_tokens: 4 });
    assert.equal(r.model, B);
    assert.equal(r.object, 'chat.completion');
    assert.equal(running!.models!.loadedId, B);
    assert.equal(running!.engine.model!.architecture, 'llama');
    assert.notEqual(running!.engine.model!.fingerprint, before.fingerprint);
    assert.ok(events.some((e) => e.type === 'unloaded' && e.id === A && e.reason === 'switch'));
    // A request without `model` now gets the loaded model, without another load.
    const loadsBefore = events.filter((e) => e.type === 'loading').length;
    const r2 = await client.completions.create({ model: '', prompt: 'abc', max_tokens: 2 } as never);
    assert.equal((r2 as { model: string }).model, B);
    assert.equal(events.filter((e) => e.type === 'loading').length, loadsBefore);
  });

  it('ten concurrent first requests for another model cause exactly one load', async () => {
    const loadsBefore = events.filter((e) => e.type === 'loading').length;
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => chat(A, `request ${i}`)));
    for (const r of results) {
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.model, A);
    }
    const loads = events.slice(0).filter((e) => e.type === 'loading');
    assert.equal(loads.length - loadsBefore, 1, 'one load for ten requests');
    assert.equal(loads.at(-1)!.id, A);
    assert.equal(running!.models!.loadedId, A);
  });

  it('unknown and path-like model names are 404 model_not_found and load nothing', async () => {
    const loadsBefore = events.filter((e) => e.type === 'loading').length;
    for (const name of ['../../etc/passwd', '/etc/passwd', `../models/${B}`, 'no-such-model']) {
      const r = await chat(name);
      assert.equal(r.status, 404, name);
      assert.equal(r.body.error.code, 'model_not_found');
      assert.equal(r.body.error.param, 'model');
      assert.ok(!JSON.stringify(r.body).includes(root));
    }
    await assert.rejects(
      client.chat.completions.create({ model: '../../etc/passwd', messages: [{ role: 'user', content: 'x' }] }),
      (err: { status?: number }) => err.status === 404,
    );
    assert.equal(events.filter((e) => e.type === 'loading').length, loadsBefore);
    assert.equal(running!.models!.loadedId, A);
  });

  it('a cached answer is never served for another model', async () => {
    const det = { temperature: 0, seed: 7 };
    const first = await chat(A, 'cache me', det);
    assert.equal(first.status, 200);
    const again = await chat(A, 'cache me', det);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('x-mlxbar-cache'), 'hit', 'same model, same request: a hit');
    const other = await chat(B, 'cache me', det);
    assert.equal(other.status, 200);
    assert.equal(other.body.model, B);
    assert.equal(other.headers.get('x-mlxbar-cache'), null, 'another model: generated, not replayed');
    assert.equal(running!.models!.loadedId, B);
  });

  it('a load that outlasts the bounded wait is 503 model_loading + Retry-After, and its lease is not leaked', async () => {
    const m = running!.models!;
    const other = m.loadedId === A ? B : A;
    const impatient = managerServerModels({ manager: m, dataDir, library: { contextTokens: 2048 }, defaultId: A, loadWaitMs: 1, retryAfterSeconds: 3 });
    const loaded = waitForEvent('loaded', (e) => e.id === other);
    await assert.rejects(impatient.acquire(other), (err: { code?: string; status?: number; retryAfter?: number }) => {
      assert.equal(err.code, 'model_loading');
      assert.equal(err.status, 503);
      assert.equal(err.retryAfter, 3);
      return true;
    });
    await loaded; // the load goes on for the next attempt
    await new Promise((r) => setImmediate(r));
    assert.equal(m.status().activeRequests, 0, 'the late lease was released');
    const r = await chat(other);
    assert.equal(r.status, 200);
    assert.equal(r.body.model, other);
  });

  it('idle unload stops the engine; /health shows it unloaded; the next request reloads it', async () => {
    const unloaded = waitForEvent('unloaded', (e) => e.reason === 'idle', 60_000);
    running!.models!.setIdleUnloadMs(1500);
    await unloaded;
    assert.equal(running!.engine.state, 'stopped');
    assert.equal(running!.models!.loadedId, null);
    const h = await fetch(`${running!.url}/health`);
    assert.equal(h.status, 200);
    const health = (await h.json()) as Record<string, unknown>;
    assert.equal(health.status, 'ok');
    assert.equal(health.model_state, 'unloaded');
    const lastUsed = health.model;
    assert.ok(lastUsed === A || lastUsed === B);
    // No `model`: the last used one comes back transparently.
    const loadsBefore = events.filter((e) => e.type === 'loaded').length;
    const r = await client.chat.completions.create({ model: '', messages: [{ role: 'user', content: 'again' }], max_tokens: 3 } as never);
    assert.equal((r as { model: string }).model, lastUsed);
    assert.equal(events.filter((e) => e.type === 'loaded').length, loadsBefore + 1);
    assert.equal(running!.engine.state, 'ready');
    // (The reload happened inside this request: one more 'loaded' event between its start and its answer, above.)
    running!.models!.setIdleUnloadMs(0);
    const h2 = (await (await fetch(`${running!.url}/health`)).json()) as Record<string, unknown>;
    assert.equal(h2.model_state, 'loaded');
  });
});
