// Continuous batching (model/batch.ts + base.ts forwardSegments): several sequences in one forward
// pass get exactly what they would get alone — the same logits (within 1e-4: only the matrix
// products are shared) and the same greedy / seeded tokens — while they join at different times,
// a newcomer's prompt is prefilled in small chunks between the running streams' tokens, one stream
// is cancelled, lookup decoding and the prefix cache stay on per sequence.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { core as mx } from '@frost-beta/mlx';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { loadModel, generateAll, generateTokens, type LoadedModel, type TokenRequest, type GenerationSummary } from '../../main/engine/model/generator.ts';
import { forward, forwardSegments, forwardSegmentsReleasing, RELEASE_MIN_ROWS } from '../../main/engine/model/base.ts';
import { afterLayer } from '../../main/engine/model/memory.ts';
import { KVCache } from '../../main/engine/model/kv-cache.ts';
import { BatchScheduler } from '../../main/engine/model/batch.ts';
import { PrefixCache } from '../../main/engine/model/prefix-cache.ts';
import { NgramCache } from '../../main/engine/model/lookup.ts';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../main/engine/types.ts';
import { someTokens } from './reference-helpers.ts';

const V = 4096;
let lmP: Promise<LoadedModel> | null = null;
const model = () => (lmP ??= buildTinyModel({ family: 'qwen3', vocabSize: V, maxPositionEmbeddings: 4096 }).then((d) => loadModel(d)));
const greedy = (maxTokens: number): SamplingParams => ({ ...DEFAULT_SAMPLING, maxTokens });
const tokens = (n: number, seed: number) => someTokens(n, seed).map((t) => t % V);

function maxAbsDiff(a: mx.array, b: mx.array): number {
  return mx.max(mx.abs(mx.subtract(a, b))).item() as number;
}

function prefilled(lm: LoadedModel, prompt: number[]): KVCache {
  const c = new KVCache(lm.config.numLayers);
  const l = forward(lm.model, prompt, c, true);
  mx.eval(l, ...c.arrays());
  return c;
}

interface Run {
  tokens: number[];
  summary: GenerationSummary | null;
}

/** Drives one generation, calling `onToken(n)` after its n-th token. */
async function drive(lm: LoadedModel, pc: PrefixCache | null, req: TokenRequest, hooks: Parameters<typeof generateTokens>[3], onToken?: (n: number) => void): Promise<Run> {
  const run: Run = { tokens: [], summary: null };
  const it = generateTokens(lm, pc, req, { ...hooks, onDone: (s) => (run.summary = s) });
  for await (const { token } of it) {
    run.tokens.push(token);
    onToken?.(run.tokens.length);
  }
  return run;
}

describe('long steps evaluated layer by layer (memory release)', () => {
  it('give the logits and KV of the one-graph step, and only steps of RELEASE_MIN_ROWS rows or more release', async () => {
    const lm = await model();
    const prompt = tokens(RELEASE_MIN_ROWS + 38, 41);
    const whole = new KVCache(lm.config.numLayers);
    const a = forward(lm.model, prompt, whole, true);
    mx.eval(a, ...whole.arrays());
    const released = new KVCache(lm.config.numLayers);
    let turns = 0;
    const b = await forwardSegmentsReleasing(lm.model, [{ tokens: prompt, cache: released, lastOnly: true }], async () => {
      turns++;
      await afterLayer();
    });
    mx.eval(b.logits, ...released.arrays());
    // One release between each pair of layers: the layer-by-layer path really ran.
    assert.equal(turns, lm.config.numLayers - 1);
    assert.ok(maxAbsDiff(a, b.logits) <= 1e-5, 'prefill logits differ');
    assert.equal(released.offset, whole.offset);
    // The KV written layer by layer is the same: the next decode step agrees.
    const next = [prompt[3]];
    const da = forward(lm.model, next, whole, true);
    const db = forward(lm.model, next, released, true);
    mx.eval(da, db);
    assert.ok(maxAbsDiff(da, db) <= 1e-5, 'decode after the released prefill differs');
    // A short step (decode / verify sized) is built in one graph.
    let shortTurns = 0;
    const c = new KVCache(lm.config.numLayers);
    const s = await forwardSegmentsReleasing(lm.model, [{ tokens: prompt.slice(0, RELEASE_MIN_ROWS - 1), cache: c, lastOnly: true }], async () => {
      shortTurns++;
    });
    mx.eval(s.logits, ...c.arrays());
    assert.equal(shortTurns, 0);
  });
});

describe('continuous batching', () => {
  it('one batched step gives each sequence the logits of its own unbatched step (decode, verify and prefill rows)', async () => {
    const lm = await model();
    const prompts = [tokens(5, 1), tokens(17, 2), tokens(33, 3), tokens(4, 4)];
    const single = prompts.map((p) => prefilled(lm, p));
    const batched = prompts.map((p) => prefilled(lm, p));
    // seq 0, 1: one decode token each; seq 2: a lookup verification (3 rows, all kept);
    // seq 3: a prefill chunk of 9 more prompt tokens (last row only).
    const segs = [
      { tokens: [11], lastOnly: true },
      { tokens: [12], lastOnly: true },
      { tokens: [13, 14, 15], lastOnly: false },
      { tokens: tokens(9, 9), lastOnly: true },
    ];
    for (let step = 0; step < 2; step++) {
      const want = segs.map((s, i) => forward(lm.model, s.tokens, single[i], s.lastOnly));
      mx.eval(...want, ...single.flatMap((c) => c.arrays()));
      const got = forwardSegments(
        lm.model,
        segs.map((s, i) => ({ ...s, cache: batched[i] })),
      );
      mx.eval(got.logits, ...batched.flatMap((c) => c.arrays()));
      assert.deepEqual(
        got.rows.map((r) => r.count),
        [1, 1, 3, 1],
      );
      for (let i = 0; i < segs.length; i++) {
        const r = got.rows[i];
        const rows = got.logits.index(mx.Slice(r.start, r.start + r.count));
        assert.deepEqual(rows.shape, want[i].shape);
        const d = maxAbsDiff(rows, want[i]);
        assert.ok(d < 1e-4, `step ${step}, sequence ${i}: max |batched − single| = ${d}`);
        assert.equal(batched[i].offset, single[i].offset);
      }
      // Negative control: the comparison tells sequences apart (rows are not interchangeable).
      const r0 = got.logits.index(mx.Slice(0, 1));
      assert.ok(maxAbsDiff(r0, want[1]) > 1e-2, 'sequence 0 and 1 logits differ');
      // The second step runs on the KV written by the first (checks the per-sequence cache writes).
    }
  });

  it('greedy: 4 sequences of different lengths joining at different times produce exactly their single-run tokens', async () => {
    const lm = await model();
    const reqs: TokenRequest[] = [
      { promptIds: tokens(6, 21), sampling: greedy(24) },
      { promptIds: tokens(40, 22), sampling: greedy(16) },
      { promptIds: tokens(13, 23), sampling: greedy(30) },
      { promptIds: tokens(70, 24), sampling: greedy(20) },
    ];
    const singles = [];
    for (const r of reqs) singles.push((await generateAll(lm, null, r)).tokens);
    const batch = new BatchScheduler(lm.model, { prefillChunk: 256, busyPrefillChunk: 8 });
    // Event log: who produced what, in order (to see a newcomer's prefill interleaved with tokens).
    const log: string[] = [];
    const runs: Promise<Run>[] = [];
    const start = (i: number) =>
      runs.push(
        drive(lm, null, reqs[i], { batch, onPrefill: () => log.push(`prefill${i}`) }, (n) => {
          log.push(`token${i}`);
          // Sequence 0 lets the others join after its 3rd, 6th and 9th tokens.
          if (i === 0 && (n === 3 || n === 6 || n === 9)) start(n / 3);
        }),
      );
    start(0);
    while (runs.length < 4) await new Promise((r) => setTimeout(r, 5));
    const out = await Promise.all(runs);
    for (let i = 0; i < 4; i++) assert.deepEqual(out[i].tokens, singles[i], `sequence ${i}`);
    assert.equal(batch.size, 0, 'every sequence left the batch');
    assert.ok(batch.stats.maxSequences >= 3, `at most ${batch.stats.maxSequences} sequences shared a step`);
    assert.ok(batch.stats.batchedSteps > 10, `${batch.stats.batchedSteps} batched steps`);
    assert.ok(batch.stats.steps < out.reduce((n, r) => n + r.tokens.length, 0), 'fewer steps than tokens: steps were shared');
    // Sequence 3's 70-token prompt was prefilled in chunks of 8 while the others kept decoding.
    const first = log.indexOf('prefill3');
    const last = log.lastIndexOf('prefill3');
    assert.ok(log.filter((e) => e === 'prefill3').length >= 70 / 8, 'chunked prefill');
    assert.ok(log.slice(first, last).some((e) => e.startsWith('token')), 'running streams produced tokens during the prefill');
  });

  it('per-sequence sampling, lookup decoding and the prefix cache keep their single-run results when batched', async () => {
    const lm = await model();
    const shared = tokens(30, 31);
    const copy = tokens(10, 32);
    const reqs: TokenRequest[] = [
      { promptIds: [...shared, ...tokens(5, 33)], sampling: { ...greedy(20), temperature: 0.9, topP: 0.9, seed: 7 } },
      { promptIds: [...shared, ...tokens(8, 34)], sampling: { ...greedy(20), repetitionPenalty: 1.3 } },
      // Copy-heavy: lookup drafts get verified inside the batched steps.
      { promptIds: [...copy, ...copy, ...copy], sampling: greedy(24), lookup: { cache: null } },
      { promptIds: tokens(12, 35), sampling: { ...greedy(18), temperature: 0.7, topK: 20, seed: 3 } },
    ];
    const singles = [];
    for (const r of reqs) singles.push((await generateAll(lm, null, r)).tokens);
    const pc = new PrefixCache({ budgetBytes: 1 << 28 });
    const batch = new BatchScheduler(lm.model, { prefillChunk: 256, busyPrefillChunk: 16 });
    const first = await Promise.all(reqs.map((r) => drive(lm, pc, r, { batch })));
    for (let i = 0; i < reqs.length; i++) assert.deepEqual(first[i].tokens, singles[i], `sequence ${i}`);
    assert.ok((first[2].summary?.acceptedDrafts ?? 0) > 0, 'lookup drafts were accepted in the batch');
    assert.ok(first.every((r) => r.summary?.cached), 'each sequence stored its KV in the prefix cache');
    // Second round: the same prompts again come (partly) from the prefix cache, batched.
    const again = await Promise.all(reqs.map((r) => drive(lm, pc, r, { batch })));
    for (let i = 0; i < reqs.length; i++) {
      assert.deepEqual(again[i].tokens, singles[i], `sequence ${i}, from the prefix cache`);
      assert.ok((again[i].summary?.cachedTokens ?? 0) > 0, `sequence ${i} reused its prefix`);
    }
    assert.ok(batch.stats.maxSequences >= 3);
  });

  it('at a long context (prompts past several KV growths, decode across a capacity boundary) batched logits equal single ones, with the capacity mask and with the used view', async () => {
    const lm = await model();
    for (const decodeUsedView of [false, true]) {
      // 700 and 1,490 prompt tokens (KV grown in 256-slot steps while prefilling in chunks), one short one.
      const prompts = [tokens(700, 51), tokens(1490, 52), tokens(37, 53)];
      const fill = (p: number[]) => {
        const c = new KVCache(lm.config.numLayers, { decodeUsedView });
        for (let i = 0; i < p.length; i += 256) {
          const l = forward(lm.model, p.slice(i, i + 256), c, true);
          mx.eval(l, ...c.arrays());
        }
        return c;
      };
      const single = prompts.map(fill);
      const batched = prompts.map(fill);
      // 1,490 + 20 crosses the 1,536-slot capacity boundary: the cache grows mid-decode.
      for (let step = 0; step < 50; step++) {
        const toks = [[100 + step], [200 + step], [300 + step]];
        const want = toks.map((t, i) => forward(lm.model, t, single[i], true));
        mx.eval(...want, ...single.flatMap((c) => c.arrays()));
        const got = forwardSegments(
          lm.model,
          toks.map((t, i) => ({ tokens: t, cache: batched[i], lastOnly: true })),
        );
        mx.eval(got.logits, ...batched.flatMap((c) => c.arrays()));
        for (let i = 0; i < toks.length; i++) {
          const r = got.rows[i];
          const d = maxAbsDiff(got.logits.index(mx.Slice(r.start, r.start + r.count)), want[i]);
          assert.ok(d < 1e-4, `decodeUsedView ${decodeUsedView}, step ${step}, sequence ${i}: max |batched − single| = ${d}`);
        }
      }
      assert.equal(batched[1].offset, 1540);
      assert.ok(batched[1].capacity > 1536, 'the long sequence grew its KV while decoding in the batch');
    }
  });

  it('the used-view decode and the capacity-mask decode give the same logits (within 1e-5) over a long generation', async () => {
    const lm = await model();
    const p = tokens(600, 61);
    const caches = [false, true].map((decodeUsedView) => new KVCache(lm.config.numLayers, { decodeUsedView }));
    for (const c of caches) mx.eval(forward(lm.model, p, c, true), ...c.arrays());
    for (let step = 0; step < 300; step++) {
      const [a, b] = caches.map((c) => forward(lm.model, [(step * 37) % V], c, true));
      mx.eval(a, b, ...caches.flatMap((c) => c.arrays()));
      const d = maxAbsDiff(a, b);
      assert.ok(d < 1e-5, `step ${step}: ${d}`);
    }
    // Negative control: a different token changes the logits well beyond the tolerance.
    const [x, y] = [forward(lm.model, [1], caches[0], true), forward(lm.model, [2], caches[1], true)];
    assert.ok(maxAbsDiff(x, y) > 1e-3);
  });

  it('cancelling one stream leaves the others exact and the batch empty', async () => {
    const lm = await model();
    const reqs: TokenRequest[] = [
      { promptIds: tokens(9, 41), sampling: greedy(28) },
      { promptIds: tokens(21, 42), sampling: greedy(28) },
      { promptIds: tokens(14, 43), sampling: greedy(28) },
    ];
    const singles = [];
    for (const r of reqs) singles.push((await generateAll(lm, null, r)).tokens);
    const batch = new BatchScheduler(lm.model, { prefillChunk: 256 });
    const abort = new AbortController();
    const out = await Promise.all(
      reqs.map((r, i) => drive(lm, null, r, { batch, signal: i === 1 ? abort.signal : undefined }, (n) => (i === 1 && n === 5 ? abort.abort() : undefined))),
    );
    assert.equal(out[1].summary?.stopReason, 'cancelled');
    assert.ok(out[1].tokens.length <= 6, `the cancelled stream stopped within a step (${out[1].tokens.length} tokens)`);
    assert.deepEqual(out[1].tokens, singles[1].slice(0, out[1].tokens.length));
    assert.deepEqual(out[0].tokens, singles[0]);
    assert.deepEqual(out[2].tokens, singles[2]);
    assert.equal(batch.size, 0);
  });
});
