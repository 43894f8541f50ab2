// Logits of every supported family match an independent float64 loop-based reference
// (test/engine/reference.ts), and a negative control (shifted rope positions / unscaled rope)
// does not — so the comparison is sensitive to the detail that matters.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTinyModel, type TinyModelSpec } from '../helpers/tiny-model.ts';
import { loadModel } from '../../main/engine/model/generator.ts';
import { ReferenceModel, maxAbs, maxAbsDiff } from './reference.ts';
import { engineLogits, someTokens } from './reference-helpers.ts';

const TOL = 1e-4;

interface Case {
  name: string;
  spec: TinyModelSpec;
  tokens: number;
  /** Positions compared (default all). */
  positions?: (L: number) => number[];
}

// Most cases use a reduced vocabulary (fast float64 reference; no text is tokenized here); one
// keeps the real 151,936-entry vocabulary.
const V = 8192;
const cases: Case[] = [
  { name: 'llama f32, tied embeddings', spec: { family: 'llama', tied: true, vocabSize: V }, tokens: 7 },
  { name: 'llama f32, untied lm_head', spec: { family: 'llama', tied: false, seed: 3, vocabSize: V }, tokens: 7 },
  {
    name: 'llama 3.x rope_scaling llama3 (untied, 40 tokens)',
    spec: { family: 'llama', ropeScaling: 'llama3', tied: false, heads: 4, headDim: 16, hidden: 64, vocabSize: V },
    tokens: 40,
    positions: (L) => [L - 3, L - 2, L - 1],
  },
  { name: 'mistral f16, untied', spec: { family: 'mistral', dtype: 'float16', tied: false, vocabSize: V }, tokens: 6 },
  { name: 'qwen2 with q/k/v bias, untied', spec: { family: 'qwen2', tied: false, vocabSize: V }, tokens: 7 },
  { name: 'qwen3 bf16, q/k norm, head_dim != hidden/heads, tied', spec: { family: 'qwen3', dtype: 'bfloat16' }, tokens: 7 },
  { name: 'qwen3 untied, MHA (kvHeads = heads)', spec: { family: 'qwen3', tied: false, kvHeads: 4, seed: 5, vocabSize: V }, tokens: 5 },
];

describe('engine logits match the independent reference', () => {
  for (const c of cases) {
    it(c.name, async (t) => {
      const dir = await buildTinyModel(c.spec);
      const lm = await loadModel(dir);
      const tokens = someTokens(c.tokens, c.tokens + (c.spec.seed ?? 0)).map((x) => x % (c.spec.vocabSize ?? 151936));
      const positions = c.positions ? c.positions(tokens.length) : tokens.map((_, i) => i);
      const ref = new ReferenceModel(dir);
      const want = ref.logits(tokens, positions);
      const got = engineLogits(lm, tokens);
      let worst = 0;
      positions.forEach((p, i) => {
        worst = Math.max(worst, maxAbsDiff(got[p], want[i]));
      });
      const scale = Math.max(...want.map(maxAbs));
      assert.ok(scale > 1, `logits should not be degenerate (max |logit| ${scale})`);
      assert.ok(worst < TOL, `max abs logit diff ${worst} (max |logit| ${scale})`);

      // Negative control: the same comparison with rope positions shifted by one must fail.
      const wrong = ref.logits(tokens, positions, { ropePositionShift: 1 });
      let ctrl = 0;
      positions.forEach((p, i) => {
        ctrl = Math.max(ctrl, maxAbsDiff(got[p], wrong[i]));
      });
      assert.ok(ctrl > 100 * TOL, `negative control should differ clearly, got ${ctrl}`);
      t.diagnostic(`max abs diff ${worst.toExponential(2)} (max |logit| ${scale.toFixed(2)}); wrong-offset control ${ctrl.toExponential(2)}`);

      if (c.spec.ropeScaling === 'llama3') {
        const unscaled = ref.logits(tokens, positions, { ignoreRopeScaling: true });
        let d = 0;
        positions.forEach((p, i) => {
          d = Math.max(d, maxAbsDiff(got[p], unscaled[i]));
        });
        assert.ok(d > 10 * TOL, `plain rope must not match llama3-scaled rope (diff ${d})`);
      }
    });
  }
});
