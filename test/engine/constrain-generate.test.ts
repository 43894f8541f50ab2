// Constrained decoding inside the real token generator (MLX, tiny random-weight model with the
// real Qwen3 vocabulary): at temperature 0 every token is the argmax of the model's logits over
// the tokens the constraint allows (checked against a full recompute), generation stops the
// moment the document is complete, and sampled (temperature > 0) output always parses.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateAll, type LoadedModel } from '../../main/engine/model/generator.ts';
import type { TextPipeline } from '../../main/engine/text/index.ts';
import { ANY_OBJECT_NODE, compileSchema, TokenConstraint, type TokenTable, type ValueNode } from '../../main/engine/constrain/index.ts';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../main/engine/types.ts';
import { engineLogits, loadGeneratorFixture } from './reference-helpers.ts';

let lm: LoadedModel;
let text: TextPipeline;
let table: TokenTable;
let eos: Set<number>;

before(async () => {
  ({ lm, text, table, eos } = await loadGeneratorFixture());
});

const prompt = () => text.encode('<|im_start|>user\nJSON please<|im_end|>\n<|im_start|>assistant\n', { addSpecialTokens: false });
const sampling = (p: Partial<SamplingParams>): SamplingParams => ({ ...DEFAULT_SAMPLING, ...p });

describe('generator + constraint', () => {
  test('greedy: each token is the argmax of the full-recompute logits over the allowed tokens', async () => {
    const c = new TokenConstraint(table, ANY_OBJECT_NODE, eos);
    const steps = 6;
    const { tokens } = await generateAll(lm, null, { promptIds: prompt(), sampling: sampling({ maxTokens: steps }), constraint: c, eosTokenIds: [...eos] });
    assert.equal(tokens.length, steps);
    // Replay: a fresh constraint, the allowed set at each step, the argmax among it.
    const replay = new TokenConstraint(table, ANY_OBJECT_NODE, eos);
    const seq = prompt();
    let unconstrainedDiffers = 0;
    for (const t of tokens) {
      const rows = engineLogits(lm, seq);
      const row = rows[rows.length - 1]!;
      const allowed = replay.allowedTokens();
      let best = allowed[0]!;
      for (const id of allowed) if (row[id]! > row[best]!) best = id;
      assert.equal(t, best);
      let argmax = 0;
      for (let i = 1; i < row.length; i++) if (row[i]! > row[argmax]!) argmax = i;
      if (argmax !== t) unconstrainedDiffers++;
      replay.advance(t);
      seq.push(t);
    }
    // The model alone would have written something else (the constraint did the work).
    assert.ok(unconstrainedDiffers > 0);
    assert.ok(text.decode(tokens).startsWith('{'));
  });

  test('generation ends exactly when the document is complete (no extra step, no EOS needed)', async () => {
    const node: ValueNode = compileSchema({ type: 'object', properties: { k: { enum: ['yes', 'no'] }, n: { type: 'integer' } }, required: ['k', 'n'], additionalProperties: false });
    for (const seed of [1, 2, 3]) {
      const c = new TokenConstraint(table, node, eos);
      const { tokens, summary } = await generateAll(lm, null, {
        promptIds: prompt(),
        sampling: sampling({ temperature: 1, seed, maxTokens: 400 }),
        constraint: c,
        eosTokenIds: [...eos],
      });
      assert.equal(summary.stopReason, 'eos', `seed ${seed}`);
      assert.ok(c.done);
      assert.equal(summary.completionTokens, tokens.length);
      const out = JSON.parse(text.decode(tokens)) as { k: string; n: number };
      assert.deepEqual(Object.keys(out), ['k', 'n']);
      assert.ok(['yes', 'no'].includes(out.k));
      assert.ok(Number.isInteger(out.n));
      // The last token completed the document: one token fewer would not parse.
      assert.throws(() => JSON.parse(text.decode(tokens.slice(0, -1))));
      assert.ok(summary.sampleMs > 0 && summary.sampleMs <= summary.decodeMs);
    }
  });

  test('penalties and top-k still apply under a constraint (a refused draw is redrawn among the allowed)', async () => {
    const node = compileSchema({ type: 'object', properties: { v: { enum: ['a', 'b', 'c'] } }, required: ['v'], additionalProperties: false });
    const c = new TokenConstraint(table, node, eos);
    const { tokens, summary } = await generateAll(lm, null, {
      promptIds: prompt(),
      sampling: sampling({ temperature: 0.9, topK: 5, topP: 0.9, repetitionPenalty: 1.3, presencePenalty: 0.5, seed: 9, maxTokens: 200 }),
      constraint: c,
      eosTokenIds: [...eos],
    });
    assert.equal(summary.stopReason, 'eos');
    assert.ok(['a', 'b', 'c'].includes((JSON.parse(text.decode(tokens)) as { v: string }).v));
  });
});
