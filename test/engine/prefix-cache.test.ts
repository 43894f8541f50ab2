// Prefix cache: reusing a cached prompt prefix gives exactly the tokens of a cold run and reports
// how many prompt tokens were reused; multi-turn prompts extend earlier entries; the LRU keeps
// within its byte budget; export/import round-trips bit-exactly into a separately loaded model.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadModel, generateAll, type LoadedModel } from '../../main/engine/model/generator.ts';
import { PrefixCache, exportEntry, importEntry } from '../../main/engine/model/prefix-cache.ts';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../main/engine/types.ts';
import { someTokens } from './reference-helpers.ts';

const V = 8192;
const spec = { family: 'qwen2', vocabSize: V } as const;
const greedy = (maxTokens: number): SamplingParams => ({ ...DEFAULT_SAMPLING, maxTokens });
const seeded = (maxTokens: number, seed: number): SamplingParams => ({ ...DEFAULT_SAMPLING, temperature: 0.9, topP: 0.95, seed, maxTokens });
let lmP: Promise<LoadedModel> | null = null;
const model = () => (lmP ??= buildTinyModel(spec).then((d) => loadModel(d)));
const toks = (n: number, seed: number) => someTokens(n, seed).map((t) => t % V);

describe('prefix cache', () => {
  it('warm runs give exactly the cold tokens and report the reused prefix', async () => {
    const lm = await model();
    const pc = new PrefixCache({ budgetBytes: 64 << 20 });
    const shared = toks(60, 1);
    const a = [...shared, ...toks(10, 2)];
    const b = [...shared, ...toks(12, 3)];
    for (const sampling of [greedy(12), seeded(12, 42)]) {
      pc.clear();
      const coldA = await generateAll(lm, null, { promptIds: a, sampling });
      const coldB = await generateAll(lm, null, { promptIds: b, sampling });
      const first = await generateAll(lm, pc, { promptIds: a, sampling });
      assert.equal(first.summary.cachedTokens, 0);
      assert.deepEqual(first.tokens, coldA.tokens);
      const again = await generateAll(lm, pc, { promptIds: a, sampling });
      assert.equal(again.summary.cachedTokens, a.length - 1, 'identical prompt reuses all but the last token');
      assert.deepEqual(again.tokens, coldA.tokens);
      const warmB = await generateAll(lm, pc, { promptIds: b, sampling });
      assert.equal(warmB.summary.cachedTokens, shared.length);
      assert.deepEqual(warmB.tokens, coldB.tokens);
    }
    const s = pc.stats();
    // Counters are lifetime totals (clear() drops entries only): two rounds of miss, hit, hit.
    assert.equal(s.hits, 4);
    assert.equal(s.misses, 2);
    assert.equal(s.reusedTokens, 2 * (69 + 60));
    assert.equal(s.computedTokens, 2 * (70 + 1 + 12));
  });

  it('a follow-up turn reuses the previous prompt and its generated tokens', async () => {
    const lm = await model();
    const pc = new PrefixCache({ budgetBytes: 64 << 20 });
    const p1 = toks(30, 4);
    const r1 = await generateAll(lm, pc, { promptIds: p1, sampling: greedy(6) });
    const p2 = [...p1, ...r1.tokens, ...toks(8, 5)];
    const cold = await generateAll(lm, null, { promptIds: p2, sampling: greedy(6) });
    const warm = await generateAll(lm, pc, { promptIds: p2, sampling: greedy(6) });
    // Entry 1 holds prompt + the 5 generated tokens that were fed back through the model.
    assert.equal(warm.summary.cachedTokens, p1.length + r1.tokens.length - 1);
    assert.deepEqual(warm.tokens, cold.tokens);
    assert.equal(pc.stats().entries, 1, 'the longer entry replaced the one it extends');
  });

  it('the LRU stays within its byte budget and evicts least recently used entries', async () => {
    const lm = await model();
    const perToken = lm.info.kvBytesPerToken;
    const entryTokens = 40 + 1; // prompt + 1 generated token fed back (maxTokens 2)
    const pc = new PrefixCache({ budgetBytes: Math.floor(2.5 * entryTokens * perToken) });
    const prompts = [toks(40, 10), toks(40, 11), toks(40, 12)];
    for (const p of prompts) await generateAll(lm, pc, { promptIds: p, sampling: greedy(2) });
    let s = pc.stats();
    assert.equal(s.entries, 2);
    assert.ok(s.bytes <= s.budgetBytes, `${s.bytes} > ${s.budgetBytes}`);
    const r = await generateAll(lm, pc, { promptIds: prompts[0], sampling: greedy(2) });
    assert.equal(r.summary.cachedTokens, 0, 'the oldest entry was evicted');
    const r2 = await generateAll(lm, pc, { promptIds: prompts[2], sampling: greedy(2) });
    assert.equal(r2.summary.cachedTokens, 39);
    // Larger than the whole budget: not stored.
    await generateAll(lm, pc, { promptIds: toks(200, 13), sampling: greedy(1) });
    s = pc.stats();
    assert.ok(pc.entries().every((e) => e.tokens.length < 200));
    pc.setBudget(entryTokens * perToken);
    s = pc.stats();
    assert.equal(s.entries, 1);
    assert.ok(s.bytes <= s.budgetBytes);
  });

  it('export/import round-trips into a separately loaded model and reuse stays exact', async () => {
    const lm = await model();
    const pc = new PrefixCache({ budgetBytes: 64 << 20 });
    const prompt = toks(50, 20);
    await generateAll(lm, pc, { promptIds: prompt, sampling: greedy(4) });
    const [entry] = pc.entries();
    const data = exportEntry(entry);
    assert.equal(data.layers.length, lm.config.numLayers);
    assert.equal(data.layers[0].keys.byteLength, (entry.tokens.length * lm.info.kvBytesPerToken) / (2 * lm.config.numLayers));

    const other = await loadModel(await buildTinyModel(spec));
    const pc2 = new PrefixCache({ budgetBytes: 64 << 20 });
    const imported = importEntry(data, other.config);
    assert.ok(pc2.add(imported.tokens, imported.cache));
    const next = [...prompt, ...toks(7, 21)];
    const cold = await generateAll(other, null, { promptIds: next, sampling: greedy(6) });
    const warm = await generateAll(other, pc2, { promptIds: next, sampling: greedy(6) });
    assert.ok(warm.summary.cachedTokens >= prompt.length);
    assert.deepEqual(warm.tokens, cold.tokens);
    // Bit-exact: exporting the imported entry gives the same bytes.
    const again = exportEntry({ tokens: imported.tokens, cache: imported.cache });
    assert.deepEqual(new Uint8Array(again.layers[1].values.buffer), new Uint8Array(data.layers[1].values.buffer));
    // Plain ArrayBuffers (e.g. read back from disk) are accepted too.
    const fromBuffers = importEntry({ tokens: data.tokens, layers: data.layers.map((l) => ({ ...l, keys: l.keys.slice().buffer, values: l.values.slice().buffer })) }, other.config);
    assert.equal(fromBuffers.cache.offset, data.tokens.length);
    // Mismatched model shape or damaged data is refused.
    assert.throws(() => importEntry(data, { ...other.config, numKvHeads: other.config.numKvHeads * 2 }), /wrong shape/);
    assert.throws(() => importEntry({ ...data, tokens: data.tokens.slice(1) }, other.config), /wrong shape/);
    const cut = { ...data, layers: data.layers.map((l, i) => (i === 0 ? { ...l, keys: l.keys.subarray(1) } : l)) };
    assert.throws(() => importEntry(cut, other.config), /wrong size/);
  });
});
