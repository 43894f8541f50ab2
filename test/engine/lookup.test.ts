// Lookup decoding (n-gram drafts verified in one pass): output is exactly plain decoding's —
// token for token when greedy or seeded — the KV cache stays consistent with the emitted tokens
// (the prefix cache gets a correct state), drafts are actually accepted on copy-heavy and repeated
// requests, and unseeded sampling keeps the same output distribution (two-sample chi-square).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadModel, generateAll, type LoadedModel } from '../../main/engine/model/generator.ts';
import { NgramCache, NgramIndex } from '../../main/engine/model/lookup.ts';
import { PrefixCache } from '../../main/engine/model/prefix-cache.ts';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../main/engine/types.ts';
import { someTokens } from './reference-helpers.ts';

const V = 4096;
let lmP: Promise<LoadedModel> | null = null;
const model = () => (lmP ??= buildTinyModel({ family: 'qwen3', vocabSize: V, maxPositionEmbeddings: 4096 }).then((d) => loadModel(d)));
const greedy = (maxTokens: number): SamplingParams => ({ ...DEFAULT_SAMPLING, maxTokens });

describe('lookup decoding', () => {
  it('n-gram index drafts what followed the latest earlier occurrence of the suffix', () => {
    const t = [1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3];
    const idx = new NgramIndex(t);
    assert.deepEqual(idx.draft(3), [7, 8, 5]); // latest earlier "1 2 3" is followed by 7 8 5
    t.push(4);
    assert.deepEqual(idx.draft(3), []); // "2 3 4" / "3 4" never occurred
    const c = new NgramCache(100);
    c.add([5, 6, 7, 8, 9]);
    assert.deepEqual(c.draft([1, 6, 7], 2), [8, 9]);
    c.add(Array.from({ length: 99 }, (_, i) => 1000 + i)); // evicts the first sequence (bound 100)
    assert.deepEqual(c.draft([1, 6, 7], 2), []);
  });

  it('greedy: identical tokens to plain decoding on a copy-heavy prompt, with drafts accepted', async () => {
    const lm = await model();
    const p = someTokens(12, 3).map((t) => t % V);
    const first = await generateAll(lm, null, { promptIds: p, sampling: greedy(40) });
    // The answer so far appears in the prompt (an "edit" of earlier output), then the same prefix again.
    const prompt = [...p, ...first.tokens, ...p];
    const plain = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(48) });
    const fast = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(48), lookup: { cache: null } });
    assert.deepEqual(fast.tokens, plain.tokens);
    assert.equal(fast.summary.stopReason, plain.summary.stopReason);
    assert.ok((fast.summary.draftTokens ?? 0) > 0, 'drafts were verified');
    assert.equal(plain.summary.draftTokens, undefined);
  });

  it('greedy: a repeated request is drafted from the cross-request cache and stays identical', async () => {
    const lm = await model();
    const prompt = someTokens(20, 11).map((t) => t % V);
    const plain = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(64) });
    const cache = new NgramCache();
    const a = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(64), lookup: { cache } });
    const b = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(64), lookup: { cache } });
    assert.deepEqual(a.tokens, plain.tokens);
    assert.deepEqual(b.tokens, plain.tokens);
    assert.ok((b.summary.acceptedDrafts ?? 0) >= plain.tokens.length / 2, `accepted ${b.summary.acceptedDrafts} of ${plain.tokens.length}`);
  });

  it('keeps the KV cache consistent: the stored prefix state continues exactly (also after max_tokens mid-draft)', async () => {
    const lm = await model();
    const prompt = someTokens(16, 5).map((t) => t % V);
    const cache = new NgramCache();
    const ref = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(30) });
    await generateAll(lm, null, { promptIds: prompt, sampling: greedy(30), lookup: { cache } });
    // Ends inside an accepted run of drafts: the unemitted drafts' KV must be dropped.
    const pc = new PrefixCache({ budgetBytes: 1 << 28 });
    const cut = await generateAll(lm, pc, { promptIds: prompt, sampling: greedy(13), lookup: { cache } });
    assert.deepEqual(cut.tokens, ref.tokens.slice(0, 13));
    assert.ok(cut.summary.cached);
    // A follow-up that extends prompt + the 13 tokens reuses the stored state and must continue
    // exactly like plain decoding of the full sequence.
    const follow = [...prompt, ...cut.tokens];
    const warm = await generateAll(lm, pc, { promptIds: follow, sampling: greedy(10) });
    const cold = await generateAll(lm, null, { promptIds: follow, sampling: greedy(10) });
    assert.ok(warm.summary.cachedTokens > prompt.length, `reused ${warm.summary.cachedTokens}`);
    assert.deepEqual(warm.tokens, cold.tokens);
  });

  it('seeded sampling: identical tokens to plain decoding (same draws in the same order)', async () => {
    const lm = await model();
    const prompt = someTokens(10, 21).map((t) => t % V);
    const sampling: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 0.7, topK: 20, seed: 1234, maxTokens: 40 };
    const plain = await generateAll(lm, null, { promptIds: prompt, sampling });
    const cache = new NgramCache();
    await generateAll(lm, null, { promptIds: prompt, sampling, lookup: { cache } });
    const again = await generateAll(lm, null, { promptIds: prompt, sampling, lookup: { cache } });
    assert.deepEqual(again.tokens, plain.tokens);
    assert.ok((again.summary.acceptedDrafts ?? 0) > 0);
  });

  it('unseeded sampling: the distribution of 3-token continuations is unchanged (chi-square)', async () => {
    const lm = await model();
    const prompt = someTokens(8, 31).map((t) => t % V);
    // Two candidates per step (top_k 2): 8 possible 3-token outputs.
    const sampling: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 1, topK: 2, maxTokens: 3 };
    const N = 240;
    const count = async (cache: NgramCache | null) => {
      const m = new Map<string, number>();
      let accepted = 0;
      let proposed = 0;
      for (let i = 0; i < N; i++) {
        const r = await generateAll(lm, null, { promptIds: prompt, sampling, ...(cache ? { lookup: { cache } } : {}) });
        const k = r.tokens.join(',');
        m.set(k, (m.get(k) ?? 0) + 1);
        accepted += r.summary.acceptedDrafts ?? 0;
        proposed += r.summary.draftTokens ?? 0;
      }
      return { m, accepted, proposed };
    };
    const plain = await count(null);
    // An adversarial draft source: always proposes the rarer second token seen in plain decoding
    // (a draft that is not distributed like the model, so a wrong acceptance rule would show).
    const second = new Map<number, number>();
    for (const [k, n] of plain.m) {
      const t = Number(k.split(',')[1]);
      second.set(t, (second.get(t) ?? 0) + n);
    }
    const rare = [...second.entries()].sort((a, b) => a[1] - b[1])[0][0];
    class FixedDrafts extends NgramCache {
      override add(): void {}
      override draft(_t: readonly number[], k: number): number[] {
        return [rare, rare].slice(0, k);
      }
    }
    const fast = await count(new FixedDrafts());
    // The test has teeth only if drafts were both accepted and rejected.
    assert.ok(fast.accepted > 20 && fast.proposed - fast.accepted > 20, `accepted ${fast.accepted} of ${fast.proposed}`);
    const keys = [...new Set([...plain.m.keys(), ...fast.m.keys()])];
    let chi = 0;
    for (const k of keys) {
      const a = plain.m.get(k) ?? 0;
      const b = fast.m.get(k) ?? 0;
      if (a + b > 0) chi += (a - b) ** 2 / (a + b); // two equal-size samples
    }
    // df = categories - 1 ≤ 7; 24.3 is the 0.1% critical value at df 7.
    assert.ok(chi < 24.3, `chi-square ${chi.toFixed(1)} over ${keys.length} outcomes`);
  });
});
