// K-blocked matrices (the CPU float32 layout of dtype-policy.ts CPU_KBLOCK_PLAN): a weight stored as
// contiguous column blocks and multiplied as an addmm chain gives the plain product's logits within
// float32 rounding, the same greedy tokens, and — tied lm_head — the same embedding rows; weight
// bytes are not doubled; packed weights and the half-precision policy never get blocked. Plain
// (unblocked) logits are the ones the float64 reference tests check (model-families.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { core as mx } from '@frost-beta/mlx';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadModel, type LoadedModel } from '../../main/engine/model/generator.ts';
import { CPU_KBLOCK_PLAN, computesOnCpu, cpuFloat32Policy, policyFromChoice, type KBlockPlan, type LinearWeight } from '../../main/engine/model/dtype-policy.ts';
import { applyLinear, embedRows, kBlockWidth } from '../../main/engine/model/linear.ts';
import { choosePolicy } from '../../main/engine/probe/policy-choice.ts';
import { engineGreedy, engineLogits, engineLogitsChunked, someTokens } from './reference-helpers.ts';
import { maxAbsDiff } from './reference.ts';

const V = 8192;
const TOL = 1e-4;
// hidden 128 / intermediate 128 / 4 heads × 32: every matrix splits into two 64-column blocks.
const EVERY_ROLE: KBlockPlan = { lm_head: 64, qkv: 64, o: 64, gate_up: 64, down: 64 };


const kindOf = (w: LinearWeight | null) => w?.kind;

describe('K-blocked matrices', () => {
  for (const tied of [true, false]) {
    // qwen2: q/k/v biases (the fused bias rides along with the blocks); qwen3: q/k norms.
    const spec = tied ? ({ family: 'qwen3', hidden: 128, vocabSize: V } as const) : ({ family: 'qwen2', hidden: 128, vocabSize: V, tied: false } as const);
    it(`give the plain product's logits and greedy tokens (${tied ? 'tied' : 'untied'} lm_head, ${spec.family})`, async (t) => {
      const dir = await buildTinyModel(spec);
      const plain = await loadModel(dir, { kBlocks: {} });
      const blocked = await loadModel(dir, { kBlocks: EVERY_ROLE });
      const w = blocked.model.weights;
      const l0 = w.layers[0];
      assert.equal(kindOf(w.lmHead), 'kblocks');
      assert.equal(w.lmHead === w.embed, tied, 'a tied table stays one array');
      assert.equal(kindOf(w.embed), tied ? 'kblocks' : 'dense');
      for (const k of ['qkv', 'o', 'gateUp', 'down', 'q', 'k', 'v', 'gate', 'up'] as const) assert.equal(kindOf(l0[k]), 'kblocks', k);
      assert.equal(kindOf(plain.model.weights.lmHead), 'dense');
      // Blocks replace the dense matrix: no second copy held.
      assert.equal(blocked.info.weightBytes, plain.info.weightBytes);

      // Embedding rows gathered from the blocks are the table's rows, bit for bit.
      const ids = mx.array([0, 5, V - 1, 77, 5], mx.int32);
      assert.equal(mx.max(mx.abs(mx.subtract(embedRows(w.embed, ids), embedRows(plain.model.weights.embed, ids)))).item(), 0);

      // Every row of a prompt, then 4-row and 1-row steps (the batched and decode shapes).
      const toks = someTokens(9, 4).map((x) => x % V);
      const bp = engineLogits(blocked, toks);
      const d1 = Math.max(...engineLogits(plain, toks).map((row, i) => maxAbsDiff(row, bp[i])));
      const a = engineLogitsChunked(plain, toks, [4, 4, 1]);
      const b = engineLogitsChunked(blocked, toks, [4, 4, 1]);
      const d2 = Math.max(...a.map((row, i) => maxAbsDiff(row, b[i])));
      t.diagnostic(`max |blocked − plain| logits: prompt ${d1}, steps ${d2}`);
      assert.ok(d1 <= TOL && d2 <= TOL, `${d1} / ${d2}`);

      const prompt = someTokens(6, 9).map((x) => x % V);
      assert.deepEqual(await engineGreedy(blocked, prompt, 12), await engineGreedy(plain, prompt, 12));
    });
  }

  it('negative control: blocks cut without the column transpose give wrong logits, which the tolerance catches', async () => {
    const lm = await loadModel(await buildTinyModel({ family: 'qwen3', hidden: 128, vocabSize: V }), { kBlocks: {} });
    const W = (lm.model.weights.lmHead as { weight: mx.array }).weight;
    const [N, K] = W.shape;
    // The typical bug: reshape rows into blocks ([K/w, N, w] straight from [N, K]) instead of columns.
    const bad = W.reshape(K / 64, N, 64);
    const broken: LinearWeight = { kind: 'kblocks', blocks: bad, parts: [bad.index(0).T, bad.index(1).T], width: 64, bias: null };
    const x = mx.random.normal([1, K]);
    const policy = cpuFloat32Policy();
    const good = applyLinear(policy, x, { kind: 'dense', weight: W, bias: null }, 'lm_head');
    const wrong = applyLinear(policy, x, broken, 'lm_head');
    const d = mx.max(mx.abs(mx.subtract(good, wrong))).item() as number;
    assert.ok(d > 100 * TOL, `the broken layout must be caught: ${d}`);
  });

  it('only dense float32 weights on the CPU device are blocked: packed weights and half-precision policies keep their layout', async () => {
    assert.ok(computesOnCpu(), 'this build computes on the CPU');
    assert.deepEqual(cpuFloat32Policy().kBlocks, CPU_KBLOCK_PLAN);
    assert.deepEqual(policyFromChoice({ ...choosePolicy('float32', null) }, 'bfloat16').kBlocks, CPU_KBLOCK_PLAN);
    const half = policyFromChoice({ mode: 'native', keepQuantized: false, halfDtypes: ['bfloat16'], setting: 'native', reasons: [] }, 'bfloat16');
    assert.deepEqual(half.kBlocks ?? {}, {}, 'a half-precision policy gets no blocks');
    // Packed 4-bit weights (native policy) stay packed even when every role is asked for.
    const q4 = await loadModel(await buildTinyModel({ family: 'qwen3', dtype: 'bfloat16', quant: { bits: 4, groupSize: 64 }, vocabSize: V }), {
      choice: choosePolicy('native', null),
      kBlocks: EVERY_ROLE,
    });
    const w = q4.model.weights;
    assert.equal(kindOf(w.lmHead), 'quantized');
    assert.equal(kindOf(w.layers[0].q), 'quantized');
    assert.equal(kindOf(w.layers[0].down), 'quantized');
    // Widths: halved down to 64 until the inner dimension splits evenly into ≥ 2 blocks.
    assert.equal(kBlockWidth(1024, 256), 256);
    assert.equal(kBlockWidth(896, 256), 128);
    assert.equal(kBlockWidth(64, 256), null);
    assert.equal(kBlockWidth(100, 256), null);
  });
});
