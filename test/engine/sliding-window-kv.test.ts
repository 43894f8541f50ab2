// Sliding-window layers keep a ring buffer bounded by the window (kv-cache.ts). Checked against the
// independent float64 reference (test/engine/reference.ts) far beyond the window: chunked prefill
// longer than the ring, decode, lookup decoding's rollback of rejected drafts on a wrapped ring, the
// prefix cache (reuse where the ring can be rewound, a clean miss where it cannot) and the persisted
// prefix KV. Memory: the ring's allocated slots stay fixed over a long generation while the
// full-attention layers grow (a size, not a timing).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { core as mx } from '@frost-beta/mlx';
import { buildTinyModel, type TinyModelSpec } from '../helpers/tiny-model.ts';
import { generateAll, loadModel, type LoadedModel } from '../../main/engine/model/generator.ts';
import { forward, forwardSegments } from '../../main/engine/model/base.ts';
import { kvCacheFor, KVCache } from '../../main/engine/model/kv-cache.ts';
import { PrefixCache, exportEntry, importEntry } from '../../main/engine/model/prefix-cache.ts';
import { DEFAULT_SAMPLING } from '../../main/engine/types.ts';
import { ReferenceModel, maxAbsDiff } from './reference.ts';
import { someTokens } from './reference-helpers.ts';

const V = 4096;
const TOL = 1e-4;
const WINDOW = 8;
// gemma3_text: layers 0 and 2 slide (window 8, local rope base), 1 and 3 are global.
const GEMMA: TinyModelSpec = { family: 'gemma3_text', layers: 4, slidingPattern: 2, slidingWindow: WINDOW, vocabSize: V, seed: 21 };
// mistral: every layer slides.
const MISTRAL: TinyModelSpec = { family: 'mistral', slidingWindow: WINDOW, tied: false, vocabSize: V, seed: 22 };

const models = new Map<TinyModelSpec, Promise<{ lm: LoadedModel; ref: ReferenceModel; dir: string }>>();
function model(spec: TinyModelSpec) {
  let p = models.get(spec);
  if (!p) {
    p = buildTinyModel(spec).then(async (dir) => ({ lm: await loadModel(dir), ref: new ReferenceModel(dir), dir }));
    models.set(spec, p);
  }
  return p;
}

const rowOf = (l: mx.array, i = 0) => (l.tolist() as number[][])[i];
const greedy = (maxTokens: number) => ({ ...DEFAULT_SAMPLING, temperature: 0, maxTokens });

describe('sliding-window KV ring buffer', () => {
  for (const [name, spec, seed] of [['gemma3_text (local + global layers)', GEMMA, 61], ['mistral (every layer slides)', MISTRAL, 31]] as const) {
    it(`${name}: greedy tokens equal the float64 reference over 6x the window (chunked prefill, decode, lookup)`, async () => {
      const { lm, ref } = await model(spec);
      assert.ok(lm.config.layerWindows.includes(WINDOW));
      // A prompt that repeats itself so lookup decoding drafts (and gets drafts rejected).
      const p = someTokens(8, seed).map((x) => x % V);
      const prompt = [...p, ...p, ...p.slice(0, 4)]; // 20 tokens, 2.5 windows
      const steps = 28; // 48 positions: 6 windows; the ring (8 - 1 + 9 slots) wraps 3 times
      const want = ref.greedy(prompt, steps);
      assert.ok(Math.min(...want.margins) > 1e-3, `reference margin ${Math.min(...want.margins)} too small`);
      // Prefill chunks of 5 (ring slack = max(5, 9) → 16 slots): chunks wrap the ring mid-step.
      const plain = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(steps), eosTokenIds: [], prefillChunk: 5 });
      assert.deepEqual(plain.tokens, want.tokens, 'plain decoding');
      const fast = await generateAll(lm, null, { promptIds: prompt, sampling: greedy(steps), eosTokenIds: [], prefillChunk: 5, lookup: { cache: null } });
      assert.deepEqual(fast.tokens, want.tokens, 'lookup decoding');
      assert.ok((fast.summary.draftTokens ?? 0) > 0, 'drafts were verified');
    });
  }

  it('rejected drafts on a wrapped ring roll back exactly (logits equal the reference at every step)', async () => {
    const { lm, ref } = await model(GEMMA);
    const seq = someTokens(40, 32).map((x) => x % V);
    const want = ref.logits(seq);
    const cache = kvCacheFor(lm.config, { slack: 5 }); // ring of 8 - 1 + 5 = 12 slots
    for (let pos = 0; pos < 12; pos += 4) mx.eval(forward(lm.model, seq.slice(pos, pos + 4), cache, false), ...cache.arrays());
    let worst = 0;
    for (let pos = 12; pos < seq.length; pos++) {
      // Verify the true token plus 4 wrong drafts, then drop the drafts' KV as lookup does.
      const drafts = someTokens(4, 100 + pos).map((x) => x % V);
      const rows = forward(lm.model, [seq[pos], ...drafts], cache, false);
      mx.eval(rows, ...cache.arrays());
      worst = Math.max(worst, maxAbsDiff(rowOf(rows, 0), want[pos]));
      assert.equal(cache.trim(drafts.length), drafts.length);
      assert.equal(cache.offset, pos + 1);
    }
    assert.ok(worst < TOL, `max abs logit diff ${worst}`);
    assert.ok(cache.slots(0) <= WINDOW - 1 + 5, `ring slots ${cache.slots(0)}`);
    // Rolling back further than the ring can restore is refused, never silently wrong.
    assert.equal(cache.canTruncate(cache.offset - 6), false);
    assert.throws(() => cache.trim(6), /cannot drop/);
    // Negative control: without the rollback the next logits are wrong.
    const bad = kvCacheFor(lm.config, { slack: 5 });
    mx.eval(forward(lm.model, seq.slice(0, 12), bad, false), ...bad.arrays());
    mx.eval(forward(lm.model, [seq[12], 1, 2, 3], bad, false), ...bad.arrays());
    bad.trim(2); // one draft too few dropped
    const off = forward(lm.model, [seq[13]], bad, true);
    mx.eval(off);
    assert.ok(maxAbsDiff(rowOf(off), want[13]) > 1e-2, 'a wrong rollback is caught');
  });

  it('continuous batching: two sequences past the window, each on its own ring, stepped together equal the reference', async () => {
    const { lm, ref } = await model(GEMMA);
    const seqs = [someTokens(30, 40), someTokens(21, 41)].map((t) => t.map((x) => x % V));
    const want = seqs.map((t) => ref.logits(t));
    const caches = seqs.map(() => kvCacheFor(lm.config, { slack: 4 }));
    const pre = [12, 9];
    caches.forEach((c, i) => mx.eval(forward(lm.model, seqs[i].slice(0, pre[i]), c), ...c.arrays()));
    let worst = 0;
    for (let step = 0; step < 12; step++) {
      // One shared pass: sequence 0 decodes one token, sequence 1 runs two every other step
      // (different widths and ring phases in the same step).
      const segs = [0, 1]
        .map((i) => ({ i, from: caches[i].offset, n: Math.min(i === 1 && step % 2 === 0 ? 2 : 1, seqs[i].length - caches[i].offset) }))
        .filter((x) => x.n > 0);
      const out = forwardSegments(lm.model, segs.map((x) => ({ tokens: seqs[x.i].slice(x.from, x.from + x.n), cache: caches[x.i], lastOnly: false })));
      mx.eval(out.logits, ...caches.flatMap((c) => c.arrays()));
      const rows = out.logits.tolist() as number[][];
      segs.forEach((x, k) => {
        for (let j = 0; j < out.rows[k].count; j++) worst = Math.max(worst, maxAbsDiff(rows[out.rows[k].start + j], want[x.i][x.from + j]));
      });
    }
    assert.ok(caches[0].offset > 3 * WINDOW - 2 && caches[1].offset === seqs[1].length);
    assert.ok(worst < TOL, `max abs logit diff ${worst}`);
  });

  it('steps longer than the planned slack re-lay the ring out and stay exact', async () => {
    const { lm, ref } = await model(MISTRAL);
    const seq = someTokens(45, 33).map((x) => x % V);
    const want = ref.logits(seq);
    const cache = kvCacheFor(lm.config, { slack: 2 });
    let pos = 0;
    let worst = 0;
    for (const n of [3, 1, 1, 6, 2, 1, 12, 1, 5, 13]) {
      const rows = forward(lm.model, seq.slice(pos, pos + n), cache, false);
      mx.eval(rows, ...cache.arrays());
      (rows.tolist() as number[][]).forEach((r, i) => (worst = Math.max(worst, maxAbsDiff(r, want[pos + i]))));
      pos += n;
    }
    assert.equal(pos, seq.length);
    assert.ok(worst < TOL, `max abs logit diff ${worst}`);
    assert.equal(cache.slots(0), WINDOW - 1 + 13, 'grown to fit the longest step, no more');
  });

  it('memory: the ring keeps a fixed number of slots over a long generation while global layers grow', async () => {
    const { lm } = await model(GEMMA);
    const pc = new PrefixCache({ budgetBytes: 1 << 30 });
    const prompt = someTokens(30, 34).map((x) => x % V);
    const sizes: number[] = [];
    // Generations of growing length through the real generator; the stored entry is its KV state.
    for (const n of [20, 120, 240]) {
      pc.clear();
      await generateAll(lm, pc, { promptIds: prompt, sampling: greedy(n), eosTokenIds: [], prefillChunk: 16 });
      const [e] = pc.entries();
      assert.equal(e.tokens.length, prompt.length + n - 1);
      const local = e.cache.slots(0);
      const global = e.cache.slots(1);
      assert.equal(local, WINDOW - 1 + 16, 'ring slots = window - 1 + slack');
      assert.ok(global >= e.tokens.length, `global layer holds every token (${global})`);
      sizes.push(lm.config.numKvHeads * lm.config.headDim * 4 * 2 * local);
    }
    assert.equal(new Set(sizes).size, 1, `local-layer KV bytes flat: ${sizes.join(', ')}`);
    // The live cache of a long decode: allocated bytes of the ring layers never change.
    const cache = kvCacheFor(lm.config, { slack: 16 });
    const ringBytes = () => {
      let b = 0;
      for (const i of [0, 2]) b += cache.slots(i) * lm.config.numKvHeads * lm.config.headDim * 4 * 2;
      return b;
    };
    mx.eval(forward(lm.model, prompt, cache), ...cache.arrays());
    const first = ringBytes();
    let tok = prompt[0];
    for (let i = 0; i < 300; i++) {
      const l = forward(lm.model, [tok], cache);
      mx.eval(l, ...cache.arrays());
      tok = (i * 7919) % V;
      assert.equal(ringBytes(), first);
    }
    assert.ok(cache.slots(1) >= 330);
  });

  it('prefix cache: a reused prefix 5x the window gives the reference tokens; a prefix the ring cannot rewind to is a clean miss', async () => {
    const { lm, ref } = await model(GEMMA);
    const pc = new PrefixCache({ budgetBytes: 1 << 30 });
    const first = someTokens(40, 35).map((x) => x % V);
    const opts = { eosTokenIds: [], prefillChunk: 5 }; // ring of 8 - 1 + 9 = 16 slots
    const a = await generateAll(lm, pc, { promptIds: first, sampling: greedy(6), ...opts });
    const stored = [...first, ...a.tokens.slice(0, -1)]; // 45 tokens
    assert.deepEqual(pc.entries()[0].tokens, stored);

    // Diverges 3 tokens before the entry's end: within the ring's slack → reused.
    const second = [...stored.slice(0, 42), ...someTokens(4, 36).map((x) => x % V)];
    const b = await generateAll(lm, pc, { promptIds: second, sampling: greedy(8), ...opts });
    assert.equal(b.summary.cachedTokens, 42);
    assert.deepEqual(b.tokens, ref.greedy(second, 8).tokens);
    // The reused cache's logits equal a fresh prefill's.
    const look = pc.lookup(second, lm.config.layerWindows);
    assert.ok(look.reusedTokens >= 42, `reused ${look.reusedTokens}`);
    const l1 = forward(lm.model, second.slice(look.reusedTokens), look.cache, true);
    const l2 = forward(lm.model, second, kvCacheFor(lm.config), true);
    mx.eval(l1, l2);
    assert.ok(maxAbsDiff(rowOf(l1), rowOf(l2)) < 1e-5);

    // Diverges 20 tokens before the end (> slack): the ring no longer holds those keys → miss.
    const third = [...stored.slice(0, 25), ...someTokens(5, 37).map((x) => x % V)];
    const c = await generateAll(lm, pc, { promptIds: third, sampling: greedy(8), ...opts });
    assert.equal(c.summary.cachedTokens, 0);
    assert.deepEqual(c.tokens, ref.greedy(third, 8).tokens);
  });

  it('persisted prefix KV: ring layers are saved in position order and restored to the same logits', async () => {
    const { lm, ref } = await model(GEMMA);
    const pc = new PrefixCache({ budgetBytes: 1 << 30 });
    const prompt = someTokens(37, 38).map((x) => x % V);
    await generateAll(lm, pc, { promptIds: prompt, sampling: greedy(4), eosTokenIds: [], prefillChunk: 5 });
    const [entry] = pc.entries();
    const data = exportEntry(entry);
    const T = entry.tokens.length;
    assert.equal(data.layers[1].shape[2], T, 'global layer: every token');
    const n = data.layers[0].shape[2];
    assert.ok(n >= WINDOW - 1 && n < T, `local layer: the ring's positions only (${n} of ${T})`);
    const { tokens, cache } = importEntry(data, lm.config);
    const next = someTokens(3, 39).map((x) => x % V);
    const l = forward(lm.model, next, cache, false);
    mx.eval(l);
    const want = ref.logits([...tokens, ...next]).slice(T);
    (l.tolist() as number[][]).forEach((row, i) => assert.ok(maxAbsDiff(row, want[i]) < TOL, `row ${i}`));
    // A ring layer with fewer than window - 1 keys cannot continue: refused.
    const short = { ...data, layers: data.layers.map((x, i) => (i === 0 ? { ...x, shape: [1, x.shape[1], 3, x.shape[3]], keys: x.keys.slice(0, (x.keys.length / n) * 3), values: x.values.slice(0, (x.values.length / n) * 3) } : x)) };
    assert.throws(() => importEntry(short, lm.config), /wrong shape/);
    // A cache laid out without the windows is refused by the forward pass, never silently full attention.
    const wrong = KVCache.fromLayers(new Array(lm.config.numLayers).fill(null), 2, [0, 1, 2, 3].map(() => ({ keys: mx.zeros([1, lm.config.numKvHeads, 2, lm.config.headDim]), values: mx.zeros([1, lm.config.numKvHeads, 2, lm.config.headDim]) })));
    assert.throws(() => forward(lm.model, [1], wrong), /layout does not match/);
  });
});
