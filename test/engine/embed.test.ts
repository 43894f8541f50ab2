// Embeddings in the engine: the pooled vector is the final-norm hidden state (checked against the
// independent float64 reference through the tied lm_head: h·Eᵀ must equal the reference logits),
// chunking does not change it, the folder's pooling declaration is honoured, and through the real
// engine process an embedding is queued with generations without touching the prefix cache.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { core as mx } from '@frost-beta/mlx';
import { buildTinyModel, type TinyModelSpec } from '../helpers/tiny-model.ts';
import { loadModel, type LoadedModel } from '../../main/engine/model/generator.ts';
import { forward, hiddenStates } from '../../main/engine/model/base.ts';
import { KVCache } from '../../main/engine/model/kv-cache.ts';
import { embedTokens, readEmbeddingConfig } from '../../main/engine/model/embed.ts';
import { createEngineClient, type SupervisedEngineClient } from '../../main/engine/process/engine-client.ts';
import { DEFAULT_SAMPLING, type EngineEvent } from '../../main/engine/types.ts';
import { parseEngineMessage, parseParentMessage, validateEmbedRequest } from '../../main/engine/process/protocol.ts';
import { ReferenceModel, maxAbs, maxAbsDiff } from './reference.ts';
import { someTokens } from './reference-helpers.ts';

// Reduced vocabulary: the float64 reference stays fast; no text is tokenized here.
const V = 8192;
const SPEC: TinyModelSpec = { family: 'qwen3', vocabSize: V, maxPositionEmbeddings: 64, seed: 11 };
const TOL = 1e-4;

let dir: string;
let lm: LoadedModel;
let E: number[][]; // tied lm_head = embed_tokens [V, hidden]

before(async () => {
  dir = await buildTinyModel(SPEC);
  lm = await loadModel(dir);
  const e = lm.model.weights.embed;
  assert.equal(e.kind, 'dense');
  E = (e as { weight: mx.array }).weight.tolist() as number[][];
});

/** h·Eᵀ in float64: the logits a tied lm_head would give for hidden state h. */
function headOf(h: ArrayLike<number>): number[] {
  return E.map((row) => {
    let s = 0;
    for (let i = 0; i < row.length; i++) s += row[i] * h[i];
    return s;
  });
}
const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((a, x) => a + x * x, 0));
const near = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) =>
  assert.ok(maxAbsDiff(a, b) <= tol, `${what}: max diff ${maxAbsDiff(a, b)} > ${tol}`);

describe('embedTokens (in process)', () => {
  test('last-token pooling returns the final-norm hidden state of the last position (reference via the tied head)', async () => {
    const tokens = someTokens(9, 4).map((t) => t % V);
    const raw = await embedTokens(lm, tokens, { pooling: 'last', raw: true });
    assert.equal(raw.length, lm.config.hiddenSize);
    const ref = new ReferenceModel(dir).logits(tokens, [tokens.length - 1])[0];
    const mine = headOf(raw);
    assert.ok(maxAbsDiff(mine, ref) <= TOL * Math.max(1, maxAbs(ref)), `vs reference: ${maxAbsDiff(mine, ref)}`);
    // And the engine's own logits for that position (same layers, through lm_head).
    const cache = new KVCache(lm.config.numLayers);
    const logits = forward(lm.model, tokens, cache, true);
    mx.eval(logits);
    near(mine, (logits.tolist() as number[][])[0], TOL, 'vs forward() logits');
    // Negative control: the second-to-last position's state is not what was returned.
    const cache2 = new KVCache(lm.config.numLayers);
    const all = hiddenStates(lm.model, tokens, cache2, false);
    mx.eval(all);
    const rows = all.tolist() as number[][];
    near(raw, rows[tokens.length - 1], 1e-5, 'vs hiddenStates last row');
    assert.ok(maxAbsDiff(raw, rows[tokens.length - 2]) > 1e-3, 'the previous position differs');
  });

  test('normalized output is the raw state divided by its L2 norm', async () => {
    const tokens = someTokens(6, 8).map((t) => t % V);
    const raw = await embedTokens(lm, tokens, { pooling: 'last', raw: true });
    const v = await embedTokens(lm, tokens, { pooling: 'last' });
    assert.ok(Math.abs(norm(v) - 1) < 1e-5, `norm ${norm(v)}`);
    const n = norm(raw);
    near(v, Array.from(raw, (x) => x / n), 1e-6, 'normalized');
  });

  test('mean pooling averages the final-norm states of every position (reference: mean of logits = head of the mean)', async () => {
    const tokens = someTokens(7, 5).map((t) => t % V);
    const raw = await embedTokens(lm, tokens, { pooling: 'mean', raw: true });
    const ref = new ReferenceModel(dir).logits(tokens);
    const meanRef = ref[0].map((_, j) => ref.reduce((a, r) => a + r[j], 0) / ref.length);
    const mine = headOf(raw);
    assert.ok(maxAbsDiff(mine, meanRef) <= TOL * Math.max(1, maxAbs(meanRef)), `mean vs reference: ${maxAbsDiff(mine, meanRef)}`);
    const last = await embedTokens(lm, tokens, { pooling: 'last', raw: true });
    assert.ok(maxAbsDiff(raw, last) > 1e-3, 'mean differs from last-token');
  });

  test('chunked runs (chunk 3) equal one pass, for last, mean and first pooling', async () => {
    const tokens = someTokens(11, 6).map((t) => t % V);
    for (const pooling of ['last', 'mean', 'first'] as const) {
      const one = await embedTokens(lm, tokens, { pooling, raw: true });
      const chunked = await embedTokens(lm, tokens, { pooling, raw: true, chunk: 3 });
      near(chunked, one, 1e-4, `${pooling} chunked`);
    }
  });

  test('too long input → context_length_exceeded; bad ids → invalid_request', async () => {
    await assert.rejects(embedTokens(lm, new Array(65).fill(5), { pooling: 'last' }), (e: { code?: string }) => e.code === 'context_length_exceeded');
    // Exactly the context is fine (nothing is generated).
    const v = await embedTokens(lm, new Array(64).fill(5), { pooling: 'last' });
    assert.equal(v.length, lm.config.hiddenSize);
    await assert.rejects(embedTokens(lm, [V + 1], { pooling: 'last' }), (e: { code?: string }) => e.code === 'invalid_request');
    await assert.rejects(embedTokens(lm, [], { pooling: 'last' }), (e: { code?: string }) => e.code === 'invalid_request');
  });
});

describe('readEmbeddingConfig', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'mlxbar-embcfg-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const folder = (name: string, files: Record<string, unknown>) => {
    const d = path.join(tmp, name);
    for (const [f, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(d, f)), { recursive: true });
      writeFileSync(path.join(d, f), typeof content === 'string' ? content : JSON.stringify(content));
    }
    mkdirSync(d, { recursive: true });
    return d;
  };
  const modules = (poolDir: string) => [
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: poolDir, type: 'sentence_transformers.models.Pooling' },
    { idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' },
  ];

  test('Qwen3-Embedding layout (modules.json → 1_Pooling, pooling_mode_lasttoken) → last', () => {
    const d = folder('qwen3emb', {
      'modules.json': modules('1_Pooling'),
      '1_Pooling/config.json': { word_embedding_dimension: 1024, pooling_mode_cls_token: false, pooling_mode_mean_tokens: false, pooling_mode_lasttoken: true },
    });
    assert.deepEqual(readEmbeddingConfig(d), { pooling: 'last', source: 'pooling_config' });
  });

  test('mean tokens declared in a renamed pooling folder → mean', () => {
    const d = folder('meanemb', {
      'modules.json': modules('pool'),
      'pool/config.json': { pooling_mode_mean_tokens: true, pooling_mode_lasttoken: false },
    });
    assert.deepEqual(readEmbeddingConfig(d), { pooling: 'mean', source: 'pooling_config' });
  });

  test('no declaration → last-token default; README with a mean_pooling helper → mean; broken JSON ignored', () => {
    assert.deepEqual(readEmbeddingConfig(folder('plain', { 'config.json': {} })), { pooling: 'last', source: 'default' });
    assert.deepEqual(readEmbeddingConfig(folder('readme', { 'README.md': 'def mean_pooling(model_output, attention_mask):\n' })), { pooling: 'mean', source: 'readme' });
    assert.deepEqual(readEmbeddingConfig(folder('broken', { 'modules.json': '{nope', '1_Pooling/config.json': '[' })), { pooling: 'last', source: 'default' });
  });
});

describe('embed protocol messages are validated both ways', () => {
  test('requests: shape errors are reasons, a good one passes', () => {
    assert.deepEqual(validateEmbedRequest({ requestId: 'e1', inputs: [[1, 2], [3]] }), { requestId: 'e1', inputs: [[1, 2], [3]] });
    for (const bad of [null, { requestId: 'bad id!', inputs: [[1]] }, { requestId: 'e', inputs: [] }, { requestId: 'e', inputs: [[]] }, { requestId: 'e', inputs: [[-1]] }, { requestId: 'e', inputs: [[1.5]] }, { requestId: 'e', inputs: 'x' }]) {
      assert.equal(typeof validateEmbedRequest(bad), 'string', JSON.stringify(bad));
    }
    assert.deepEqual(parseParentMessage({ type: 'embed', id: 3, request: { requestId: 'e', inputs: [[1]] } }), { type: 'embed', id: 3, request: { requestId: 'e', inputs: [[1]] } });
    assert.equal(parseParentMessage({ type: 'embed', request: { requestId: 'e', inputs: [[1]] } }), null);
  });

  test('results: vectors must be Float32Arrays, error codes known, pooling known', () => {
    const ok = { type: 'embed_result', id: 1, embeddings: [new Float32Array([1, 0])], promptTokens: 2, pooling: 'last' };
    assert.deepEqual(parseEngineMessage(ok), ok);
    assert.equal(parseEngineMessage({ ...ok, embeddings: [[1, 0]] }), null);
    assert.equal(parseEngineMessage({ ...ok, pooling: 'max' }), null);
    assert.equal(parseEngineMessage({ ...ok, error: { code: 'oops', message: 'x' } }), null);
    const err = parseEngineMessage({ ...ok, embeddings: [], error: { code: 'context_length_exceeded', message: 'too long' } });
    assert.deepEqual(err && err.type === 'embed_result' ? err.error : null, { code: 'context_length_exceeded', message: 'too long' });
    const cancelled = parseEngineMessage({ ...ok, embeddings: [], cancelled: true });
    assert.equal(cancelled && cancelled.type === 'embed_result' ? cancelled.cancelled : null, true);
  });
});

describe('embed through the engine process', () => {
  let client: SupervisedEngineClient;
  before(async () => {
    client = createEngineClient({ log: () => {} });
    await client.start(dir);
  });
  after(async () => {
    await client?.stop();
  });

  test('batch result equals in-process embeddings, in order; unit norm; usage counts tokens', async () => {
    const inputs = [someTokens(5, 1), someTokens(12, 2), someTokens(3, 3)].map((ids) => ids.map((t) => t % V));
    const r = await client.embed({ requestId: 'emb-1', inputs });
    assert.equal(r.pooling, 'last');
    assert.equal(r.promptTokens, 20);
    assert.equal(r.embeddings.length, 3);
    for (let i = 0; i < inputs.length; i++) {
      assert.ok(r.embeddings[i] instanceof Float32Array);
      assert.ok(Math.abs(norm(r.embeddings[i]) - 1) < 1e-5);
      near(r.embeddings[i], await embedTokens(lm, inputs[i], { pooling: 'last' }), 1e-5, `input ${i}`);
    }
  });

  test('too long input rejects with context_length_exceeded; the engine keeps serving', async () => {
    await assert.rejects(client.embed({ requestId: 'emb-long', inputs: [[1, 2], new Array(65).fill(7)] }), (e: { code?: string }) => e.code === 'context_length_exceeded');
    const r = await client.embed({ requestId: 'emb-after', inputs: [[1, 2, 3]] });
    assert.equal(r.embeddings.length, 1);
  });

  test('queued behind a generation: the generation is unchanged, the prefix cache untouched, a cancelled embed rejects with AbortError', async () => {
    const promptIds = someTokens(10, 9).map((t) => t % V);
    const sampling = { ...DEFAULT_SAMPLING, temperature: 0.8, seed: 7, maxTokens: 24 };
    const collect = async (requestId: string) => {
      const text: string[] = [];
      let done: Extract<EngineEvent, { type: 'done' }> | null = null;
      for await (const e of client.generate({ requestId, promptIds, sampling, cachePrompt: false })) {
        if (e.type === 'delta') text.push(e.text);
        if (e.type === 'done') done = e;
        if (e.type === 'error') throw new Error(e.message);
      }
      return { text: text.join(''), done };
    };
    const alone = await collect('gen-alone');
    const before = (await client.stats()).prefixCache;
    const ac = new AbortController();
    const gen = collect('gen-with-embeds');
    const emb = client.embed({ requestId: 'emb-during', inputs: [promptIds] });
    // Checked (and its rejection handled) from the start: it is cancelled while still queued.
    const cancelled = assert.rejects(client.embed({ requestId: 'emb-cancelled', inputs: [promptIds] }, ac.signal), (e: Error) => e.name === 'AbortError');
    ac.abort();
    const [withEmbeds, r] = await Promise.all([gen, emb]);
    await cancelled;
    assert.equal(withEmbeds.text, alone.text);
    assert.equal(withEmbeds.done?.completionTokens, alone.done?.completionTokens);
    near(r.embeddings[0], await embedTokens(lm, promptIds, { pooling: 'last' }), 1e-5, 'embedding during generation');
    const afterStats = (await client.stats()).prefixCache;
    assert.equal(afterStats.entries, before.entries);
    assert.equal(afterStats.bytes, before.bytes);
    assert.equal(afterStats.hits + afterStats.misses, before.hits + before.misses + 1, 'only the generation looked up the prefix cache');
  });
});

describe('embed and engine crashes', () => {
  test('SIGKILL mid-batch rejects with engine_crashed (no path); after the restart embeddings work again', async () => {
    const c = createEngineClient({ log: () => {}, backoff: { initialMs: 50, maxMs: 200 } });
    try {
      await c.start(dir);
      const inputs = Array.from({ length: 3000 }, (_, i) => someTokens(40, i + 1).map((t) => t % V));
      const pending = c.embed({ requestId: 'emb-crash', inputs });
      await new Promise((r) => setTimeout(r, 200));
      process.kill(c.pid!, 'SIGKILL');
      await assert.rejects(pending, (e: { code?: string; message: string }) => {
        assert.equal(e.code, 'engine_crashed');
        assert.doesNotMatch(e.message, /\/tmp\/|\/home\/|node_modules/);
        return true;
      });
      for (let i = 0; i < 600 && c.state !== 'ready'; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(c.state, 'ready');
      const r = await c.embed({ requestId: 'emb-after-crash', inputs: [[1, 2, 3]] });
      near(r.embeddings[0], await embedTokens(lm, [1, 2, 3], { pooling: 'last' }), 1e-5, 'after restart');
    } finally {
      await c.stop().catch(() => {});
    }
  });
});
