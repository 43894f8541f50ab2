// Every family and variant the registry supports beyond the Llama block — Qwen3-MoE (stacked,
// per-expert, 4-bit and 8-bit with the 8-bit router), Gemma 3 (text and multimodal), Phi-3
// (fused projections, partial rotary, longrope), sliding windows (Mistral, Qwen2) and rope scaling
// (YaRN, dynamic NTK) — generates the same greedy tokens as the independent float64 reference
// (test/engine/reference.ts) over 8 steps with a clear logit margin, through the real generator.
// Each case has a negative control: the reference with the family's typical bug must differ.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { core as mx } from '@frost-beta/mlx';
import { buildTinyModel, type TinyModelSpec } from '../helpers/tiny-model.ts';
import { generateAll, loadModel, type LoadedModel } from '../../main/engine/model/generator.ts';
import { forward } from '../../main/engine/model/base.ts';
import { kvCacheFor } from '../../main/engine/model/kv-cache.ts';
import { DEFAULT_SAMPLING } from '../../main/engine/types.ts';
import { ReferenceModel, maxAbsDiff, type ReferenceOptions } from './reference.ts';
import { someTokens } from './reference-helpers.ts';

const V = 4096;
const STEPS = 8;
const TOL = 1e-4;
const MARGIN = 1e-3;

interface Case {
  name: string;
  spec: TinyModelSpec;
  prompt: number;
  control: { name: string; opts: ReferenceOptions };
  /** Also expected to differ (e.g. window off for gemma). */
  extraControls?: { name: string; opts: ReferenceOptions }[];
  check?: (lm: LoadedModel) => void;
}

const moe = (o: Partial<NonNullable<TinyModelSpec['moe']>> = {}) => ({ experts: 16, topK: 4, intermediate: 32, normTopk: true, ...o });

export const cases: Case[] = [
  {
    name: 'qwen3_moe f32: 16 experts top-4 (stacked switch_mlp), a dense mlp_only layer',
    spec: { family: 'qwen3_moe', layers: 3, moe: moe({ mlpOnlyLayers: [1] }), tied: false, vocabSize: V },
    prompt: 9,
    control: { name: 'top-k without renormalisation', opts: { topkNoRenorm: true } },
    check: (lm) => {
      assert.deepEqual(lm.config.moe?.sparseLayers, [true, false, true]);
      assert.ok(lm.model.weights.layers[1].gate && !lm.model.weights.layers[1].moe);
    },
  },
  {
    name: 'qwen3_moe bf16: Hugging Face per-expert tensors stacked at load, decoder_sparse_step 2',
    spec: { family: 'qwen3_moe', dtype: 'bfloat16', layers: 2, moe: moe({ perExpert: true, sparseStep: 2, experts: 8, topK: 2 }), vocabSize: V, seed: 2 },
    prompt: 7,
    control: { name: 'top-k without renormalisation', opts: { topkNoRenorm: true } },
    check: (lm) => assert.deepEqual(lm.config.moe?.sparseLayers, [false, true]),
  },
  {
    name: 'qwen3_moe 4-bit g64 (quantized stacked experts, 8-bit router as mlx-lm writes it)',
    spec: {
      family: 'qwen3_moe',
      dtype: 'bfloat16',
      quant: { bits: 4, groupSize: 64 },
      moe: moe({ experts: 8, topK: 2, intermediate: 256, router8bit: true }),
      vocabSize: V,
      seed: 3,
    },
    prompt: 7,
    control: { name: 'top-k without renormalisation', opts: { topkNoRenorm: true } },
    check: (lm) => assert.deepEqual(lm.config.quantizationOverrides['model.layers.0.mlp.gate'], { bits: 8, groupSize: 64 }),
  },
  {
    name: 'qwen3_moe 8-bit g64',
    spec: { family: 'qwen3_moe', quant: { bits: 8, groupSize: 64 }, moe: moe({ experts: 8, topK: 2, intermediate: 128 }), hidden: 128, vocabSize: V, seed: 4 },
    prompt: 7,
    control: { name: 'top-k without renormalisation', opts: { topkNoRenorm: true } },
  },
  {
    name: 'gemma3_text bf16: (1+w) norms, GeGLU, sandwich norms, window 8 on local layers (prompt 12 + 8 > window)',
    spec: { family: 'gemma3_text', dtype: 'bfloat16', layers: 4, slidingPattern: 2, slidingWindow: 8, vocabSize: V },
    prompt: 12,
    control: { name: 'RMSNorm without +1', opts: { normWithoutPlusOne: true } },
    extraControls: [{ name: 'sliding window off', opts: { windowOff: true } }],
    check: (lm) => {
      assert.deepEqual(lm.config.layerWindows, [8, null, 8, null]);
      assert.deepEqual(lm.config.layerRopeTheta, [10000, 1000000, 10000, 1000000]);
      assert.equal(lm.model.weights.lmHead, lm.model.weights.embed, 'tied by absence of lm_head');
    },
  },
  {
    name: 'gemma3 multimodal checkpoint 4-bit: text_config + language_model.* (vision tower ignored), layer_types',
    spec: { family: 'gemma3', dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 }, layers: 3, slidingPattern: 3, layerTypes: true, slidingWindow: 6, vocabSize: V, seed: 5 },
    prompt: 10,
    control: { name: 'RMSNorm without +1', opts: { normWithoutPlusOne: true } },
    extraControls: [{ name: 'sliding window off', opts: { windowOff: true } }],
    check: (lm) => assert.deepEqual(lm.config.layerWindows, [6, 6, null]),
  },
  {
    name: 'phi3: fused qkv_proj / gate_up_proj, partial rotary 0.75, longrope',
    spec: { family: 'phi3', heads: 4, kvHeads: 2, hidden: 128, partialRotary: 0.75, ropeScaling: 'longrope', tied: false, vocabSize: V, seed: 6 },
    prompt: 9,
    control: { name: 'qkv split in k, q, v order', opts: { qkvSplitOrder: 'kqv' } },
    extraControls: [{ name: 'longrope off', opts: { ignoreRopeScaling: true } }],
    check: (lm) => assert.equal(lm.config.ropeDims, 24),
  },
  {
    name: 'phi3 4-bit g64 (fused projections split on packed rows)',
    spec: { family: 'phi3', quant: { bits: 4, groupSize: 64 }, kvHeads: 4, vocabSize: V, seed: 7 },
    prompt: 7,
    control: { name: 'qkv split in q, v, k order', opts: { qkvSplitOrder: 'qvk' } },
  },
  {
    name: 'mistral with sliding_window 6 (prompt 10 + 8 steps)',
    spec: { family: 'mistral', slidingWindow: 6, tied: false, vocabSize: V, seed: 8 },
    prompt: 10,
    control: { name: 'sliding window off', opts: { windowOff: true } },
    check: (lm) => assert.ok(lm.config.layerWindows.every((w) => w === 6)),
  },
  {
    name: 'qwen2 use_sliding_window (layers >= max_window_layers slide)',
    spec: { family: 'qwen2', slidingWindow: 5, tied: false, vocabSize: V, seed: 9 },
    prompt: 9,
    control: { name: 'sliding window off', opts: { windowOff: true } },
    check: (lm) => assert.deepEqual(lm.config.layerWindows, [null, 5]),
  },
  {
    name: 'qwen3 rope_scaling yarn (factor 4, original context 64)',
    spec: { family: 'qwen3', ropeScaling: 'yarn', vocabSize: V, seed: 10 },
    prompt: 9,
    control: { name: 'yarn off', opts: { ignoreRopeScaling: true } },
  },
  {
    name: 'llama rope_scaling dynamic (max_position_embeddings 16, generation crosses it)',
    spec: { family: 'llama', ropeScaling: 'dynamic', maxPositionEmbeddings: 16, tied: false, vocabSize: V, seed: 11 },
    prompt: 12,
    control: { name: 'dynamic off', opts: { ignoreRopeScaling: true } },
  },
];

/** Engine logits of the prompt's last position and of each fed-back token (one decode step each). */
function engineStepLogits(lm: LoadedModel, prompt: number[], tokens: number[]): number[][] {
  const cache = kvCacheFor(lm.config);
  const rows: number[][] = [];
  let l = forward(lm.model, prompt, cache, true);
  mx.eval(l, ...cache.arrays());
  rows.push((l.tolist() as number[][])[0]);
  for (const t of tokens.slice(0, -1)) {
    l = forward(lm.model, [t], cache, true);
    mx.eval(l, ...cache.arrays());
    rows.push((l.tolist() as number[][])[0]);
  }
  return rows;
}

describe('model families: greedy tokens match the independent float64 reference', () => {
  for (const c of cases) {
    it(c.name, async (t) => {
      const dir = await buildTinyModel(c.spec);
      const lm = await loadModel(dir);
      c.check?.(lm);
      const prompt = someTokens(c.prompt, c.prompt + (c.spec.seed ?? 0)).map((x) => x % V);
      const ref = new ReferenceModel(dir);
      const want = ref.greedy(prompt, STEPS);
      const minMargin = Math.min(...want.margins);
      assert.ok(minMargin > MARGIN, `reference top-1 margin ${minMargin} too small for a meaningful comparison`);

      const { tokens } = await generateAll(lm, null, {
        promptIds: prompt,
        sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: STEPS },
        eosTokenIds: [],
      });
      assert.deepEqual(tokens, want.tokens, 'greedy tokens');

      const got = engineStepLogits(lm, prompt, want.tokens);
      const worst = Math.max(...got.map((row, i) => maxAbsDiff(row, want.logits[i])));
      assert.ok(worst < TOL, `max abs logit diff ${worst}`);

      // Negative controls: the typical bug, run through the same comparison, must be caught.
      const seq = [...prompt, ...want.tokens.slice(0, -1)];
      const positions = want.tokens.map((_, i) => prompt.length - 1 + i);
      const processedAt = seq.map((_, i) => (i < prompt.length ? prompt.length : i + 1));
      const notes: string[] = [];
      for (const ctl of [c.control, ...(c.extraControls ?? [])]) {
        const bad = ref.logits(seq, positions, { ...ctl.opts, processedAt });
        const diff = Math.max(...got.map((row, i) => maxAbsDiff(row, bad[i])));
        assert.ok(diff > 100 * TOL, `negative control "${ctl.name}" should differ clearly, got ${diff}`);
        const badTokens = bad.map((row) => row.indexOf(Math.max(...row)));
        notes.push(`${ctl.name}: logit diff ${diff.toExponential(2)}, ${badTokens.filter((x, i) => x !== want.tokens[i]).length}/${STEPS} tokens differ`);
      }
      t.diagnostic(`max abs diff ${worst.toExponential(2)}, min margin ${minMargin.toFixed(3)}; ${notes.join('; ')}`);
    });
  }
});

describe('sliding windows with the prefix cache', () => {
  it('a reused prefix longer than the window gives the same tokens and logits as a fresh prefill', async () => {
    const { PrefixCache } = await import('../../main/engine/model/prefix-cache.ts');
    const spec: TinyModelSpec = { family: 'mistral', slidingWindow: 6, tied: false, vocabSize: V, seed: 8 };
    const lm = await loadModel(await buildTinyModel(spec));
    const pc = new PrefixCache({ budgetBytes: 1 << 30 });
    const first = someTokens(14, 21).map((x) => x % V);
    const sampling = { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 4 };
    await generateAll(lm, pc, { promptIds: first, sampling, eosTokenIds: [] });
    const second = [...first, ...someTokens(5, 22).map((x) => x % V)];
    const reused = await generateAll(lm, pc, { promptIds: second, sampling: { ...sampling, maxTokens: STEPS }, eosTokenIds: [] });
    assert.ok(reused.summary.cachedTokens >= 14, `prefix reused (${reused.summary.cachedTokens} tokens, window 6)`);
    const fresh = await generateAll(lm, null, { promptIds: second, sampling: { ...sampling, maxTokens: STEPS }, eosTokenIds: [] });
    assert.deepEqual(reused.tokens, fresh.tokens);
    const want = new ReferenceModel(await buildTinyModel(spec)).greedy(second, STEPS);
    assert.deepEqual(reused.tokens, want.tokens);
    // Logits of the reused path (cache from the prefix cache, then the rest) vs a fresh prefill.
    const look = pc.lookup(second, lm.config.layerWindows);
    const l1 = forward(lm.model, second.slice(look.reusedTokens), look.cache, true);
    const l2 = forward(lm.model, second, kvCacheFor(lm.config), true);
    mx.eval(l1, l2);
    assert.ok(maxAbsDiff((l1.tolist() as number[][])[0], (l2.tolist() as number[][])[0]) < 1e-5);
  });
});
