// KV buffer pool: a finished sequence's buffers are reused by the next one in place, and reuse is
// invisible in the output — the same tokens as fresh buffers, whatever the pool held before
// (stale keys, NaN), whichever buffer a prefix-cache entry gave back while a request still reads it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { core as mx } from '@frost-beta/mlx';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadModel, generateAll, type LoadedModel } from '../../main/engine/model/generator.ts';
import { forward } from '../../main/engine/model/base.ts';
import { KVCache } from '../../main/engine/model/kv-cache.ts';
import { KVBufferPool, maxSlotsFor } from '../../main/engine/model/kv-pool.ts';
import { PrefixCache } from '../../main/engine/model/prefix-cache.ts';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../main/engine/types.ts';
import { maxAbsDiff } from './reference.ts';
import { engineLogits, someTokens } from './reference-helpers.ts';

const V = 8192;
const greedy = (maxTokens: number): SamplingParams => ({ ...DEFAULT_SAMPLING, maxTokens });
const toks = (n: number, seed: number) => someTokens(n, seed).map((t) => t % V);
let lmP: Promise<LoadedModel> | null = null;
const model = () => (lmP ??= buildTinyModel({ family: 'qwen3', vocabSize: V }).then((d) => loadModel(d, { kvPoolBytes: 0 })));

const filled = (shape: number[], value: number) => {
  const a = mx.full(shape, value, mx.float32);
  mx.eval(a);
  return a;
};
const allZero = (a: mx.array) => (mx.max(mx.abs(a)).item() as number) === 0;

/** Runs the prompts one after another with `pool` (or fresh buffers): the tokens of each. */
async function run(lm: LoadedModel, pool: KVBufferPool | null, prompts: number[][], maxTokens: number, pc: PrefixCache | null = null): Promise<number[][]> {
  const saved = lm.kvPool;
  lm.kvPool = pool;
  try {
    const out: number[][] = [];
    for (const p of prompts) out.push((await generateAll(lm, pc, { promptIds: p, sampling: greedy(maxTokens) })).tokens);
    return out;
  } finally {
    lm.kvPool = saved;
  }
}

describe('KV buffer pool', () => {
  it('hands back the smallest fitting buffer, zero-filled, and keeps within its budget', () => {
    const bytes = 1 * 2 * 512 * 16 * 4;
    const pool = new KVBufferPool(2.5 * bytes);
    const stale = filled([1, 2, 512, 16], Number.NaN);
    pool.give(stale, stale); // the same buffer twice is held once
    assert.equal(pool.stats().buffers, 1);
    assert.equal(pool.take(1, 2, 16, mx.float32, 600), null, 'too small');
    assert.ok(maxSlotsFor(100) < 512);
    assert.equal(pool.take(1, 2, 16, mx.float32, 100), null, 'far too big: it would idle memory and attention work');
    assert.equal(pool.take(1, 4, 16, mx.float32, 400), null, 'other heads');
    assert.equal(pool.take(1, 2, 16, mx.int32, 400), null, 'other dtype');
    const got = pool.take(1, 2, 16, mx.float32, 400);
    assert.equal(got, stale, 'the same buffer, reused in place');
    assert.ok(allZero(got!), 'zero-filled');
    assert.equal(pool.take(1, 2, 16, mx.float32, 400), null, 'taken once');
    const small = filled([1, 2, 512, 16], 1);
    const big = filled([1, 2, 600, 16], 1);
    pool.give(big, small);
    assert.equal(pool.take(1, 2, 16, mx.float32, 500), small, 'the smallest that fits');
    pool.give(small, got!); // over budget: the oldest (big) goes
    assert.equal(pool.stats().buffers, 2);
    assert.equal(pool.stats().bytes, 2 * bytes);
    assert.equal(pool.take(1, 2, 16, mx.float32, 550), null);
    assert.deepEqual([pool.stats().hits, pool.stats().misses], [2, 6]);
    assert.equal(pool.clear(), 2 * bytes);
    assert.equal(pool.stats().buffers, 0);
  });

  // The point of the pool: the next sequence writes into memory that is already mapped. Buffers of
  // 48 MiB are above glibc's mmap ceiling, so fresh ones are always new pages (the control below).
  it('a pooled buffer is written in place: no page faults, where a fresh one faults every page', { skip: process.platform !== 'linux' && 'reads /proc/self/stat' }, () => {
    const faults = () => Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[7]);
    const shape = [1, 8, 12_288, 128]; // 48 MiB of float32
    const pages = (12_288 * 8 * 128 * 4) / 4096;
    const keys = mx.random.normal([1, 8, 256, 128]);
    mx.eval(keys);
    const write = (buf: mx.array) => {
      const f0 = faults();
      buf.indexPut_([mx.Slice(), mx.Slice(), mx.Slice(0, 256)], keys);
      mx.eval(buf);
      return faults() - f0;
    };
    const fresh = write(mx.zeros(shape, mx.float32));
    assert.ok(fresh > pages / 2, `control: a fresh buffer faults its pages (${fresh} of ${pages})`);
    const pool = new KVBufferPool(256 << 20);
    pool.give(filled(shape, Number.NaN));
    const pooled = pool.take(1, 8, 128, mx.float32, 12_288)!;
    const inPlace = write(pooled);
    assert.ok(inPlace < pages / 20, `zero-filled and written in place (${inPlace} faults for ${pages} pages)`);
    assert.ok(allZero(pooled.index(mx.Slice(), mx.Slice(), mx.Slice(256))));
  });

  it('generations through the pool give the tokens fresh buffers give, and reuse the buffers', async () => {
    const lm = await model();
    // Capacities (prompt + 12 rounded up to 256 slots): 256, 256 again (reused), 512 (new
    // buffers), 512 (reused), 256 (reused: the smallest that fits, not the 512 ones).
    const prompts = [toks(40, 1), toks(35, 2), toks(300, 3), toks(290, 4), toks(20, 5)];
    const fresh = await run(lm, null, prompts, 12);
    const pool = new KVBufferPool(256 << 20);
    const pooled = await run(lm, pool, prompts, 12);
    assert.deepEqual(pooled, fresh);
    const s = pool.stats();
    assert.ok(s.hits >= 2 * lm.config.numLayers * 3, `buffers reused (hits ${s.hits}, misses ${s.misses})`);
    assert.ok(s.buffers > 0 && s.bytes <= s.budgetBytes);
    // Past the capacity planned at the start (250 + 256 → 512 slots): at 512 tokens the cache
    // grows through the pool (768 slots), copying what it holds.
    const long = [toks(250, 6)];
    assert.deepEqual(await run(lm, pool, long, 300), await run(lm, null, long, 300));
  });

  it('stale or NaN contents of a pooled buffer never reach a later sequence', async () => {
    const lm = await model();
    const prompt = toks(24, 7);
    const [fresh] = await run(lm, null, [prompt], 10);
    const pool = new KVBufferPool(256 << 20);
    const { numLayers, numKvHeads, headDim } = lm.info;
    // Exactly the buffers the generation will ask for (24 + 10 tokens → 256 slots), full of NaN:
    // decode steps attend over the whole capacity under an additive mask, which NaN survives.
    for (let i = 0; i < 2 * numLayers; i++) pool.give(filled([1, numKvHeads, 256, headDim], Number.NaN));
    const [pooled] = await run(lm, pool, [prompt], 10);
    assert.equal(pool.stats().hits, 2 * numLayers, 'the NaN buffers were used');
    assert.deepEqual(pooled, fresh);
  });

  it("an entry's buffers go to the pool when it is dropped; a request still reading it is not disturbed", async () => {
    const lm = await model();
    const pool = new KVBufferPool(256 << 20);
    const pc = new PrefixCache({ budgetBytes: 64 << 20 });
    const shared = toks(50, 8);
    const a = [...shared, ...toks(6, 9)];
    const b = [...shared, ...toks(9, 10)];
    await run(lm, pool, [a], 4, pc);
    assert.equal(pool.stats().buffers, 0, 'the entry holds the buffers, the pool does not');
    // A request continuing from the entry (views of its buffers) ...
    const hit = pc.lookup(b, lm.config.layerWindows, { pool });
    assert.equal(hit.reusedTokens, shared.length);
    // ... while the entry is dropped and another sequence takes and overwrites its buffers.
    pc.clear();
    assert.equal(pool.stats().buffers, 2 * lm.config.numLayers);
    await run(lm, pool, [toks(45, 11)], 4);
    assert.ok(pool.stats().hits >= 2 * lm.config.numLayers);
    const logits = forward(lm.model, b.slice(shared.length), hit.cache, false);
    mx.eval(logits);
    const full = engineLogits(lm, b).slice(shared.length);
    (logits.tolist() as number[][]).forEach((row, i) => assert.ok(maxAbsDiff(row, full[i]) < 1e-4, `row ${i}`));
    hit.cache.release();
  });

  it('a released cache is empty and can start again', async () => {
    const lm = await model();
    const pool = new KVBufferPool(64 << 20);
    const t = toks(12, 12);
    const cache = new KVCache(lm.config.layerWindows, { pool });
    mx.eval(forward(lm.model, t, cache, false), ...cache.arrays());
    cache.release();
    assert.equal(cache.offset, 0);
    assert.equal(cache.arrays().length, 0);
    assert.equal(pool.stats().buffers, 2 * lm.config.numLayers);
    const logits = forward(lm.model, t, cache, false);
    mx.eval(logits);
    const full = engineLogits(lm, t);
    (logits.tolist() as number[][]).forEach((row, i) => assert.ok(maxAbsDiff(row, full[i]) < 1e-4));
  });
});
