// Several generations at once on the real headless server (startServe: engine process, hardening
// with memory admission, metrics, settings API) on a tiny model whose KV cache is large per token
// (64 KiB), so that memory is decided by KV growth:
//  - a running generation holds a reservation of its worst-case KV (prompt + max_tokens) until it
//    ends: a newcomer that would fit next to what the running one holds NOW, but not next to what it
//    may still grow into, is refused with 503 insufficient_memory; once the running one is cancelled
//    the same newcomer is served. /v1/metrics and /metrics show the reservation.
//  - PUT /v1/settings {maxConcurrent} applies without a restart: with 1, three concurrent requests
//    never share an engine step; with 3, they do (the engine's batch counters).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { serveOptionsFor, startServe, type RunningServe } from '../../main/core/serve.ts';
import { DEFAULT_SETTINGS } from '../../main/settings/schema.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { postJson, rawRequest } from './helpers.ts';

const MB = 1024 * 1024;
/** The app's memory budget (hard watermark) in this test. */
const HARD_MB = 3000;

describe('concurrent generations: KV reservations and live maxConcurrent (real server)', { timeout: 600_000 }, () => {
  let root = '';
  let running: RunningServe | null = null;
  let port = 0;
  let model = '';

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const metrics = async (): Promise<any> => JSON.parse((await rawRequest(port, { path: '/v1/metrics' })).body);
  const until = async <T>(what: string, f: () => Promise<T | null | undefined | false>): Promise<T> => {
    for (let i = 0; i < 600; i++) {
      const v = await f();
      if (v) return v;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`gave up waiting for ${what}`);
  };
  const body = (content: string, maxTokens: number, stream: boolean) => ({ model, messages: [{ role: 'user', content }], max_tokens: maxTokens, temperature: 0, stream });

  /** Starts a streamed generation and resolves once its first content delta arrived (it is running). */
  async function startStream(content: string, maxTokens: number): Promise<{ abort(): void; done: Promise<unknown> }> {
    const ac = new AbortController();
    const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body(content, maxTokens, true)),
      signal: ac.signal,
    });
    assert.equal(res.status, 200, 'the stream was admitted');
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = '';
    while (!/"content":"[^"]/.test(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended before a token: ${text.slice(0, 300)}`);
      text += dec.decode(value);
    }
    const done = (async () => {
      try {
        for (;;) if ((await reader.read()).done) return;
      } catch {
        // aborted
      }
    })();
    return { abort: () => ac.abort(), done };
  }

  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'mlxbar-concurrency-'));
    const dataDir = path.join(root, 'data');
    // KV per token: 8 layers × (K + V) × 8 KV heads × 128 dims × 4 B = 64 KiB.
    const dir = await buildTinyModel({ family: 'qwen3', layers: 8, hidden: 64, heads: 8, kvHeads: 8, headDim: 128, intermediate: 128, maxPositionEmbeddings: 65536 });
    const settings = {
      ...DEFAULT_SETTINGS,
      dataDir,
      maxConcurrent: 4,
      memory: { softLimitMb: HARD_MB - 100, hardLimitMb: HARD_MB, softPercent: 75, hardPercent: 90 },
    };
    running = await startServe(serveOptionsFor(dir, dataDir, { settings, idleUnloadMs: 0, settingsApi: { sources: {} } }), () => {});
    port = Number(new URL(running.url).port);
    model = running.engine.model!.id;
    // A memory sample with the engine's RSS in it (the footprint admission compares with).
    await until('a memory sample', async () => (await metrics()).memory.engine_rss_mb > 0);
  });

  after(async () => {
    await running?.stop().catch(() => {});
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('a running generation reserves its worst-case KV: a newcomer that only fits next to what it holds now waits for it to end (503 insufficient_memory, then served)', async () => {
    const kvPerToken = running!.engine.model!.kvBytesPerToken;
    assert.equal(kvPerToken, 64 * 1024);
    const m0 = await metrics();
    assert.equal(m0.memory.reserving_generations, 0);
    const roomMb = HARD_MB - m0.memory.current_mb;
    assert.ok(roomMb > 1000, `the test needs room under its ${HARD_MB} MB budget (footprint ${m0.memory.current_mb} MB)`);
    // Each of the two big requests may grow to ~55% of the room: one fits, two do not.
    const bigTokens = Math.floor((0.55 * roomMb * MB) / kvPerToken);

    const a = await startStream('Tell me a very long story.', bigTokens);
    try {
      // What A holds now is tiny (a short prompt, a few tokens): only its reservation refuses B.
      const b = await postJson(port, '/v1/chat/completions', body('Tell me another very long story.', bigTokens, false));
      assert.equal(b.status, 503, b.body);
      assert.equal(JSON.parse(b.body).error.code, 'insufficient_memory');
      assert.ok(Number(b.headers['retry-after']) > 0, 'Retry-After');
      // A small request fits next to A's reservation.
      const c = await postJson(port, '/v1/chat/completions', body('Hi', 8, false));
      assert.equal(c.status, 200, c.body);
      // The reservation is visible: /v1/metrics and Prometheus.
      const m1 = await until('the reservation in /v1/metrics', async () => {
        const m = await metrics();
        return m.memory.reserving_generations === 1 ? m : null;
      });
      assert.ok(m1.memory.reserved_kv_mb > 0.5 * roomMb, `reserved ${m1.memory.reserved_kv_mb} MB of ${roomMb} MB`);
      const prom = (await rawRequest(port, { path: '/metrics' })).body;
      const line = prom.split('\n').find((l) => l.startsWith('mlxbar_memory_reserved_kv_bytes '));
      assert.ok(line && Number(line.split(' ')[1]) > 0.5 * roomMb * MB, `Prometheus: ${line}`);
    } finally {
      a.abort();
      await a.done;
    }
    // A cancelled: its reservation is released, and the same big request is served.
    await until('the reservation to be released', async () => (await metrics()).memory.reserving_generations === 0);
    const b2 = await startStream('Tell me another very long story.', bigTokens);
    b2.abort();
    await b2.done;
    await until('the second reservation to be released', async () => (await metrics()).memory.reserving_generations === 0);
    assert.equal((await metrics()).memory.reserved_kv_mb, 0);
  });

  test('PUT /v1/settings {maxConcurrent} applies without a restart: 1 = one generation at a time, 3 = shared engine steps', async () => {
    const put = async (maxConcurrent: number) => {
      const current = JSON.parse((await rawRequest(port, { path: '/v1/settings' })).body).values;
      const r = await rawRequest(port, {
        method: 'PUT',
        path: '/v1/settings',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ values: { ...current, maxConcurrent } }),
      });
      assert.equal(r.status, 200, r.body);
      const b = JSON.parse(r.body);
      assert.deepEqual(b.applied, ['maxConcurrent']);
      assert.ok(!b.restartRequired.includes('maxConcurrent'), 'no restart needed');
    };
    const three = () =>
      Promise.all(
        ['Count to twenty.', 'Describe a forest.', 'What is a compiler?'].map(async (q) => {
          const r = await postJson(port, '/v1/chat/completions', body(q, 40, false));
          assert.equal(r.status, 200, r.body);
        }),
      );
    const batch = async () => (await running!.engine.stats()).batch ?? { steps: 0, batchedSteps: 0, maxSequences: 0, sequenceSteps: 0 };

    await put(1);
    const before1 = await batch();
    await three();
    const after1 = await batch();
    assert.equal(after1.batchedSteps, before1.batchedSteps, 'with maxConcurrent 1 no two generations shared a step');
    const settingsNow = JSON.parse((await rawRequest(port, { path: '/v1/settings' })).body);
    assert.equal(settingsNow.values.maxConcurrent, 1);
    assert.ok(!settingsNow.restartRequired.includes('maxConcurrent'));

    await put(3);
    await three();
    const after3 = await batch();
    assert.ok(after3.batchedSteps > after1.batchedSteps, 'with maxConcurrent 3 the generations shared steps');
    assert.ok(after3.maxSequences >= 2);
  });
});
