// The KV cache: incremental decoding (1-token steps and mixed chunks) gives the same logits as a
// full recompute, trimming rewinds exactly, and snapshots are independent of later growth.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { core as mx } from '@frost-beta/mlx';
import { buildTinyModel, type TinyModelSpec } from '../helpers/tiny-model.ts';
import { loadModel } from '../../main/engine/model/generator.ts';
import { forward } from '../../main/engine/model/base.ts';
import { KVCache } from '../../main/engine/model/kv-cache.ts';
import { maxAbsDiff } from './reference.ts';
import { engineLogits, engineLogitsChunked, someTokens } from './reference-helpers.ts';

const V = 8192;
const specs: [string, TinyModelSpec][] = [
  ['llama (llama3 rope scaling)', { family: 'llama', ropeScaling: 'llama3', headDim: 16, vocabSize: V }],
  ['qwen3 bf16', { family: 'qwen3', dtype: 'bfloat16', vocabSize: V }],
  ['qwen2 4-bit', { family: 'qwen2', quant: { bits: 4, groupSize: 64 }, vocabSize: V }],
];

function worst(a: number[][], b: number[][]): number {
  assert.equal(a.length, b.length);
  return Math.max(...a.map((row, i) => maxAbsDiff(row, b[i])));
}

describe('KV cache', () => {
  for (const [name, spec] of specs) {
    it(`${name}: 1-token steps and mixed chunks equal full recompute`, async () => {
      const lm = await loadModel(await buildTinyModel(spec));
      const toks = someTokens(24, 9).map((t) => t % V);
      const full = engineLogits(lm, toks);
      const steps = engineLogitsChunked(lm, toks, new Array(24).fill(1));
      const mixed = engineLogitsChunked(lm, toks, [7, 7, 1, 1, 5, 3]);
      assert.ok(worst(full, steps) < 1e-4, `steps diff ${worst(full, steps)}`);
      assert.ok(worst(full, mixed) < 1e-4, `mixed diff ${worst(full, mixed)}`);
    });
  }

  it('trim rewinds exactly and snapshots are unaffected by later updates', async () => {
    const lm = await loadModel(await buildTinyModel(specs[1][1]));
    const toks = someTokens(20, 4).map((t) => t % V);
    const full = engineLogits(lm, toks);
    const cache = new KVCache(lm.config.numLayers);
    mx.eval(forward(lm.model, toks.slice(0, 15), cache, false), ...cache.arrays());
    const snap = cache.snapshot();
    assert.equal(cache.trim(5), 5);
    assert.equal(cache.offset, 10);
    const l1 = forward(lm.model, toks.slice(10), cache, false);
    mx.eval(l1, ...cache.arrays());
    const rows = l1.tolist() as number[][];
    rows.forEach((row, i) => assert.ok(maxAbsDiff(row, full[10 + i]) < 1e-4));
    // The snapshot still holds 15 tokens and continues correctly.
    assert.equal(snap.offset, 15);
    const l2 = forward(lm.model, toks.slice(15), snap, false);
    mx.eval(l2);
    (l2.tolist() as number[][]).forEach((row, i) => assert.ok(maxAbsDiff(row, full[15 + i]) < 1e-4));
    assert.equal(snap.bytes(), 20 * lm.info.kvBytesPerToken);
    assert.equal(cache.trim(100), 20);
    assert.equal(cache.offset, 0);
  });

  it('a cache told the expected length allocates once and still equals full recompute', async () => {
    const lm = await loadModel(await buildTinyModel(specs[1][1]));
    const toks = someTokens(24, 5).map((t) => t % V);
    const full = engineLogits(lm, toks);
    const cache = new KVCache(lm.config.numLayers);
    cache.expect(300); // more than one 256-slot step: the first update must allocate 512 slots
    const rows: number[][] = [];
    let pos = 0;
    for (const n of [7, 7, 1, 1, 5, 3]) {
      const logits = forward(lm.model, toks.slice(pos, pos + n), cache, false);
      mx.eval(logits, ...cache.arrays());
      assert.equal(cache.capacity, 512);
      rows.push(...(logits.tolist() as number[][]));
      pos += n;
    }
    assert.ok(worst(full, rows) < 1e-4, `diff ${worst(full, rows)}`);
  });

  it('a wrong cache offset is detected (negative control)', async () => {
    const lm = await loadModel(await buildTinyModel(specs[1][1]));
    const toks = someTokens(10, 2).map((t) => t % V);
    const full = engineLogits(lm, toks);
    const cache = new KVCache(lm.config.numLayers);
    mx.eval(forward(lm.model, toks.slice(0, 9), cache), ...cache.arrays());
    cache.commit(1); // corrupt: pretend one more token is cached
    const last = forward(lm.model, toks.slice(9), cache);
    mx.eval(last);
    assert.ok(maxAbsDiff((last.tolist() as number[][])[0], full[9]) > 1e-3);
  });
});
