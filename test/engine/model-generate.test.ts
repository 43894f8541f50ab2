// The token generator: greedy decoding equals argmax over a full recompute, EOS and max_tokens
// stop it, context limits are enforced, and cancellation stops prefill within one chunk and
// decode within one step (and is never cached).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadModel, generateAll, generateTokens, ModelError, type GenerationSummary, type LoadedModel } from '../../main/engine/model/generator.ts';
import { PrefixCache } from '../../main/engine/model/prefix-cache.ts';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../main/engine/types.ts';
import { engineLogits, someTokens } from './reference-helpers.ts';

const V = 8192;
const greedy = (maxTokens: number): SamplingParams => ({ ...DEFAULT_SAMPLING, maxTokens });
let lmP: Promise<LoadedModel> | null = null;
const model = () => (lmP ??= buildTinyModel({ family: 'qwen3', vocabSize: V, maxPositionEmbeddings: 8192 }).then((d) => loadModel(d)));

function argmax(row: number[]): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

describe('token generator', () => {
  it('greedy decoding equals argmax of a full recompute at every step', async () => {
    const lm = await model();
    const prompt = someTokens(9, 1).map((t) => t % V);
    const { tokens, summary } = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(8) });
    assert.equal(tokens.length, 8);
    assert.equal(summary.stopReason, 'max_tokens');
    assert.equal(summary.completionTokens, 8);
    assert.equal(summary.promptTokens, 9);
    const seq = prompt.slice();
    for (const t of tokens) {
      const rows = engineLogits(lm, seq);
      assert.equal(t, argmax(rows[rows.length - 1]));
      seq.push(t);
    }
  });

  it('stops on any EOS id (model + caller supplied) without emitting it', async () => {
    const lm = await model();
    const prompt = someTokens(6, 2).map((t) => t % V);
    const free = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(6) });
    const eosId = free.tokens[2];
    const firstIdx = free.tokens.indexOf(eosId);
    const r = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(6), eosTokenIds: [eosId] });
    assert.equal(r.summary.stopReason, 'eos');
    assert.deepEqual(r.tokens, free.tokens.slice(0, firstIdx));
  });

  it('enforces the context length: rejects a too-long prompt, clamps max tokens', async () => {
    const dir = await buildTinyModel({ family: 'llama', vocabSize: V, maxPositionEmbeddings: 32 });
    const lm = await loadModel(dir);
    await assert.rejects(
      generateAll(lm, null, { promptIds: someTokens(32).map((t) => t % V), sampling: greedy(4) }),
      (e: unknown) => e instanceof ModelError && e.code === 'context_length_exceeded',
    );
    const r = await generateAll(lm, null, { promptIds: someTokens(29).map((t) => t % V), sampling: greedy(50) });
    assert.equal(r.tokens.length, 3);
    assert.equal(r.summary.stopReason, 'max_tokens');
    await assert.rejects(generateAll(lm, null, { promptIds: [], sampling: greedy(4) }), (e: unknown) => e instanceof ModelError && e.code === 'invalid_request');
    await assert.rejects(generateAll(lm, null, { promptIds: [1, V + 5], sampling: greedy(4) }), (e: unknown) => e instanceof ModelError && e.code === 'invalid_request');
  });

  it('an abort during prefill stops within one chunk; nothing is yielded or cached', async () => {
    const lm = await model();
    const pc = new PrefixCache({ budgetBytes: 1 << 30 });
    const ac = new AbortController();
    const progress: number[] = [];
    let done: GenerationSummary | null = null;
    const r = await generateAll(
      lm,
      pc,
      { promptIds: someTokens(1000, 3).map((t) => t % V), sampling: greedy(5), prefillChunk: 100 },
      {
        signal: ac.signal,
        onPrefill: (p) => {
          progress.push(p.processed);
          if (p.processed >= 300) ac.abort();
        },
        onDone: (s) => (done = s),
      },
    );
    assert.deepEqual(progress, [100, 200, 300]);
    assert.equal(r.tokens.length, 0);
    assert.equal(r.summary.stopReason, 'cancelled');
    assert.equal(done!.stopReason, 'cancelled');
    assert.equal(r.summary.cached, false);
    assert.equal(pc.stats().entries, 0);
  });

  it('an abort from a timer lands between prefill chunks (the generator yields the event loop)', async () => {
    const lm = await model();
    const ac = new AbortController();
    let chunksAfterAbort = 0;
    let chunks = 0;
    const timer = setTimeout(() => ac.abort(), 30);
    try {
      const r = await generateAll(
        lm,
        null,
        { promptIds: someTokens(6000, 4).map((t) => t % V), sampling: greedy(5), prefillChunk: 64 },
        { signal: ac.signal, onPrefill: () => { chunks++; if (ac.signal.aborted) chunksAfterAbort++; } },
      );
      assert.equal(r.summary.stopReason, 'cancelled');
      assert.ok(chunks < 6000 / 64, `prefill should stop early (ran ${chunks} chunks)`);
      assert.ok(chunksAfterAbort <= 1, `ran ${chunksAfterAbort} chunks after the abort`);
    } finally {
      clearTimeout(timer);
    }
  });

  it('an abort during decode stops within one step and is not cached', async () => {
    const lm = await model();
    const pc = new PrefixCache({ budgetBytes: 1 << 30 });
    const ac = new AbortController();
    const tokens: number[] = [];
    const it = generateTokens(lm, pc, { promptIds: someTokens(20, 5).map((t) => t % V), sampling: greedy(100) }, { signal: ac.signal });
    let summary: GenerationSummary | null = null;
    for (;;) {
      const r = await it.next();
      if (r.done) {
        summary = r.value;
        break;
      }
      tokens.push(r.value.token);
      if (tokens.length === 5) ac.abort();
    }
    assert.equal(tokens.length, 5);
    assert.equal(summary.stopReason, 'cancelled');
    assert.equal(summary.cached, false);
    assert.equal(pc.stats().entries, 0);
  });

  it('a consumer .return() (e.g. stop string) is a normal end: reported and cached', async () => {
    const lm = await model();
    const pc = new PrefixCache({ budgetBytes: 1 << 30 });
    const prompt = someTokens(20, 6).map((t) => t % V);
    let done: GenerationSummary | null = null;
    const got: number[] = [];
    for await (const { token } of generateTokens(lm, pc, { promptIds: prompt, sampling: greedy(50) }, { onDone: (s) => (done = s) })) {
      got.push(token);
      if (got.length === 3) break;
    }
    assert.equal(done!.stopReason, 'consumer');
    assert.equal(done!.completionTokens, 3);
    assert.equal(done!.cached, true);
    const [entry] = pc.entries();
    assert.deepEqual(entry.tokens, [...prompt, got[0], got[1]], 'cache holds prompt + tokens fed back');
  });

  it('cachePrompt: false keeps the prefix cache untouched', async () => {
    const lm = await model();
    const pc = new PrefixCache({ budgetBytes: 1 << 30 });
    await generateAll(lm, pc, { promptIds: someTokens(12, 7).map((t) => t % V), sampling: greedy(3), cachePrompt: false });
    assert.equal(pc.stats().entries, 0);
  });
});
