// The shared decoder forward pass (Llama block: RMSNorm → GQA attention with rope → RMSNorm →
// SwiGLU MLP), parameterized by ModelConfig switches that the family files set (q/k/v bias,
// q/k norm, rope scaling, sliding windows, Gemma's sandwich norms / GeGLU / embedding scale, a
// sparse-MoE MLP from moe.ts). Follows the structure of mlx-lm's llama.py, written for this binding:
//  - `fast.rope` takes a JS-number offset and has no `freqs` argument, so scaled ropes use a
//    manual rotate-half rope with precomputed inverse frequencies (rope.ts);
//  - `scaledDotProductAttention(..., 'causal')` is silently ignored here, so steps get an
//    explicit additive [L, capacity] mask (which also hides the KV buffer's unused slots);
//  - matmul/SDPA are guarded by the dtype policy (f16/bf16 would abort the process).
import { core as mx } from '@frost-beta/mlx';
import type { ModelConfig } from './config.ts';
import type { DtypePolicy, LinearWeight } from './dtype-policy.ts';
import type { KVCache } from './kv-cache.ts';
import { applyLinear, embedRows } from './linear.ts';
import { gatedAct } from './activations.ts';
import { moeMlp } from './moe.ts';
import { applyRope, layerRope, type LayerRope } from './rope.ts';
import type { LayerWeights, ModelWeights } from './weights.ts';

export { llama3InvFreq } from './rope.ts';
export { causalMask } from './kv-cache.ts';

export interface DecoderModel {
  config: ModelConfig;
  weights: ModelWeights;
  policy: DtypePolicy;
  /** Each layer's rope (base, scaling, rotated dims). */
  ropes: LayerRope[];
}

export function createDecoderModel(config: ModelConfig, weights: ModelWeights, policy: DtypePolicy): DecoderModel {
  const ropes = Array.from({ length: config.numLayers }, (_, i) => layerRope(config, i));
  return { config, weights, policy, ropes };
}

function linear(m: DecoderModel, x: mx.array, w: LinearWeight, what: string): mx.array {
  return applyLinear(m.policy, x, w, what);
}

function embed(m: DecoderModel, ids: mx.array): mx.array {
  return embedRows(m.weights.embed, ids);
}

/** One sequence's rows in a step: its place in the step's rows and its KV position. */
interface SegmentPlan {
  cache: KVCache;
  /** First row of the segment in the step's [1, rows, hidden] activation. */
  start: number;
  L: number;
  /** KV offset before the step (absolute position of the segment's first token). */
  offset: number;
}

/**
 * Attention of one sequence's rows ([1, L, heads, headDim] q/k/v after the q/k norms) over its own
 * KV cache, at its own positions: rope, KV write, mask, SDPA. Returns [1, L, heads·headDim].
 */
function attendSegment(m: DecoderModel, layerIdx: number, q: mx.array, k: mx.array, v: mx.array, s: SegmentPlan): mx.array {
  const c = m.config;
  const { L, offset, cache } = s;
  q = applyRope(m.ropes[layerIdx], q.transpose(0, 2, 1, 3), offset);
  k = applyRope(m.ropes[layerIdx], k.transpose(0, 2, 1, 3), offset);
  v = v.transpose(0, 2, 1, 3);
  // The keys/values to attend over (the cache decides the view: whole buffer, slots in use, or a
  // sliding-window layer's ring) and the additive mask hiding what this layer must not see (built
  // once per layer group — full attention / each window — and step by the cache).
  const [keys, values] = cache.update(layerIdx, k, v);
  m.policy.assertCompute(q, 'attention');
  m.policy.assertCompute(keys, 'attention');
  const mask = cache.mask(layerIdx, m.policy.computeDtype);
  const o = blockedAttention(q, keys, values, c.attnScale, mask);
  return o.transpose(0, 2, 1, 3).reshape(1, L, c.numHeads * c.headDim);
}

/**
 * Upper bound on one attention-score tensor ([heads, query rows, keys]) of a step. On the CPU the
 * SDPA runs as matmul → mask add → softmax → matmul, each materializing a [heads, rows, keys]
 * array; glibc's malloc serves a block above its mmap threshold (at most 32 MiB on 64-bit) with a
 * fresh mmap that is unmapped on free, so every such array is page-faulted in anew (measured on
 * the Qwen3-0.6B shape: the 2,048-token prompt's last 256-token chunk, 16 × 256 × 2,048 floats =
 * 32 MiB, took ~470k page faults against ~15k for the chunks before it, and twice their time).
 * Longer steps therefore attend in blocks of query rows (exact: rows are independent). Mutable
 * for tests only.
 */
export const attentionLimits = { scoreBytes: 16 * 2 ** 20 };

/** SDPA over query-row blocks small enough for attentionLimits.scoreBytes (one call when they fit). */
function blockedAttention(q: mx.array, keys: mx.array, values: mx.array, scale: number, mask: mx.array | undefined): mx.array {
  const [, H, L] = q.shape;
  const rowBytes = H * keys.shape[2] * q.itemsize;
  const fit = Math.max(1, Math.floor(attentionLimits.scoreBytes / rowBytes));
  if (L <= fit) return mx.fast.scaledDotProductAttention(q, keys, values, scale, mask);
  const blocks = Math.ceil(L / fit);
  const size = Math.ceil(L / blocks);
  const outs: mx.array[] = [];
  for (let a = 0; a < L; a += size) {
    const rows = mx.Slice(a, Math.min(L, a + size));
    const qb = q.index(mx.Slice(), mx.Slice(), rows);
    // The mask is [L, keys] (one row per query row); rows of the block only.
    outs.push(mx.fast.scaledDotProductAttention(qb, keys, values, scale, mask ? mask.index(rows) : undefined));
  }
  return mx.concatenate(outs, 2);
}

/**
 * Attention over the step's rows: the q/k/v/o projections run once over every row of every
 * sequence (weights read once per step: the batching win); rope, KV and SDPA per sequence.
 */
function attention(m: DecoderModel, lw: LayerWeights, layerIdx: number, x: mx.array, segs: SegmentPlan[]): mx.array {
  const c = m.config;
  const T = x.shape[1];
  let q: mx.array, k: mx.array, v: mx.array;
  if (lw.qkv) {
    // One product for the three projections (weights.ts fuseRows), split along the output features.
    const qkv = linear(m, x, lw.qkv, 'qkv_proj');
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const cols = (from: number, to: number) => qkv.index(mx.Slice(), mx.Slice(), mx.Slice(from, to));
    q = cols(0, qDim).reshape(1, T, c.numHeads, c.headDim);
    k = cols(qDim, qDim + kvDim).reshape(1, T, c.numKvHeads, c.headDim);
    v = cols(qDim + kvDim, qDim + 2 * kvDim).reshape(1, T, c.numKvHeads, c.headDim);
  } else {
    q = linear(m, x, lw.q, 'q_proj').reshape(1, T, c.numHeads, c.headDim);
    k = linear(m, x, lw.k, 'k_proj').reshape(1, T, c.numKvHeads, c.headDim);
    v = linear(m, x, lw.v, 'v_proj').reshape(1, T, c.numKvHeads, c.headDim);
  }
  if (lw.qNorm) q = mx.fast.rmsNorm(q, lw.qNorm, c.rmsNormEps);
  if (lw.kNorm) k = mx.fast.rmsNorm(k, lw.kNorm, c.rmsNormEps);
  let o: mx.array;
  if (segs.length === 1) o = attendSegment(m, layerIdx, q, k, v, segs[0]);
  else {
    const rows = (a: mx.array, s: SegmentPlan) => a.index(mx.Slice(), mx.Slice(s.start, s.start + s.L));
    o = mx.concatenate(
      segs.map((s) => attendSegment(m, layerIdx, rows(q, s), rows(k, s), rows(v, s), s)),
      1,
    );
  }
  return linear(m, o, lw.o, 'o_proj');
}

function mlp(m: DecoderModel, lw: LayerWeights, x: mx.array): mx.array {
  if (lw.moe) return moeMlp(m.config, lw.moe, x, (a, w, what) => linear(m, a, w, what));
  let g: mx.array, u: mx.array;
  if (lw.gateUp) {
    const gu = linear(m, x, lw.gateUp, 'gate_up_proj');
    const I = m.config.intermediateSize;
    g = gu.index(mx.Slice(), mx.Slice(), mx.Slice(0, I));
    u = gu.index(mx.Slice(), mx.Slice(), mx.Slice(I, 2 * I));
  } else {
    g = linear(m, x, lw.gate!, 'gate_proj');
    u = linear(m, x, lw.up!, 'up_proj');
  }
  return linear(m, gatedAct(m.config, g, u), lw.down!, 'down_proj');
}

/** One sequence's part of a (batched) forward step. */
export interface ForwardSegment {
  tokens: number[];
  /** The sequence's own KV cache (extended and committed by the step). */
  cache: KVCache;
  /** Only the last row goes through the final norm and lm_head (prefill). */
  lastOnly: boolean;
}

/**
 * The decoder blocks over every segment's tokens, each on top of its own cache (extended and
 * committed): the residual stream [1, rows, hidden] before the final norm, rows in segment order.
 * Shared by `forward` (logits) and `hiddenStates` (embeddings) so both run exactly the same layers.
 * With one segment the ops are exactly those of an unbatched step (no row slicing or concat).
 */
function decoderStack(m: DecoderModel, segments: ForwardSegment[]): mx.array {
  const layers = decoderLayers(m, segments);
  let r = layers.next();
  while (!r.done) r = layers.next();
  return r.value;
}

/**
 * Steps with at least this many rows free each layer's temporaries before building the next
 * (`forwardSegmentsReleasing`). Below it (decode steps) the per-layer event-loop turn costs more
 * than the memory it saves.
 */
export const RELEASE_MIN_ROWS = 32;

/**
 * The decoder stack, evaluating each layer and letting its temporaries go before the next one is
 * built. This binding frees an array's memory only when V8 collects its JS wrapper, so a stack
 * built in one go keeps every layer's temporaries alive until the whole step is evaluated: ~1.2 GB
 * for a 256-token chunk of the Qwen3-0.6B shape, touched fresh (page faults) whenever glibc has
 * handed it back, and never warm in cache. Per layer (eval, minor GC, one turn — the wrappers are
 * young and their finalizers run on the next turn) the working set is one layer's and is reused.
 * Measured (bench `prefill`): a process's first 512-token prompt 95–102 tok/s instead of 59–65
 * (faults 45k instead of 320k), warm runs unchanged or a little faster. Same ops, same results.
 */
async function decoderStackReleasing(m: DecoderModel, segments: ForwardSegment[], afterLayer: () => Promise<void>): Promise<mx.array> {
  const layers = decoderLayers(m, segments);
  for (let r = layers.next(); ; r = layers.next()) {
    if (r.done) return r.value;
    mx.eval(r.value);
    await afterLayer();
  }
}

/** The decoder blocks one at a time: yields the residual stream after each layer, returns it at the end. */
function* decoderLayers(m: DecoderModel, segments: ForwardSegment[]): Generator<mx.array, mx.array, void> {
  const c = m.config;
  const plans: SegmentPlan[] = [];
  const ids: number[] = [];
  for (const seg of segments) {
    const L = seg.tokens.length;
    if (L === 0) throw new Error('forward needs at least one token');
    if (plans.some((p) => p.cache === seg.cache)) throw new Error('a forward step takes each KV cache once');
    seg.cache.useLayout(c.layerWindows);
    const offset = seg.cache.offset;
    seg.cache.reserve(L);
    plans.push({ cache: seg.cache, start: ids.length, L, offset });
    for (const t of seg.tokens) ids.push(t);
  }
  if (plans.length === 0) throw new Error('forward needs at least one token');
  const T = ids.length;
  let x = embed(m, mx.array(ids, mx.int32)).reshape(1, T, c.hiddenSize);
  if (c.embedScale !== null) x = mx.multiply(x, c.embedScale);
  const ws = m.weights;
  const eps = c.rmsNormEps;
  for (let i = 0; i < ws.layers.length; i++) {
    const lw = ws.layers[i];
    let a = attention(m, lw, i, mx.fast.rmsNorm(x, lw.inputNorm, eps), plans);
    if (lw.attnOutNorm) a = mx.fast.rmsNorm(a, lw.attnOutNorm, eps);
    x = mx.add(x, a);
    let f = mlp(m, lw, mx.fast.rmsNorm(x, lw.postNorm, eps));
    if (lw.mlpOutNorm) f = mx.fast.rmsNorm(f, lw.mlpOutNorm, eps);
    x = mx.add(x, f);
    if (i < ws.layers.length - 1) yield x;
  }
  for (const p of plans) p.cache.commit(p.L);
  return x;
}

/**
 * Runs `tokens` through the decoder on top of `cache` (which is extended and committed).
 * Returns logits [rows, vocab]; with `lastOnly` only the last position goes through the final
 * norm and lm_head (prefill never needs the others). The result is lazy: the caller evaluates it
 * together with `cache.arrays()`.
 */
export function forward(m: DecoderModel, tokens: number[], cache: KVCache, lastOnly = true): mx.array {
  return forwardSegments(m, [{ tokens, cache, lastOnly }]).logits;
}

/**
 * One forward step over several sequences (continuous batching): every segment's tokens on top of
 * its own KV cache. Returns the logits of all kept rows [rows, vocab] (float32) and each segment's
 * row range in it: a `lastOnly` segment keeps its last row, the others all of theirs. Lazy, like
 * `forward`. Exact: each sequence sees the same attention as an unbatched step; only the matrix
 * products are shared (a few ulps from the BLAS kernel choice).
 */
export function forwardSegments(m: DecoderModel, segments: ForwardSegment[]): { logits: mx.array; rows: { start: number; count: number }[] } {
  return logitsOf(m, segments, decoderStack(m, segments));
}

/**
 * `forwardSegments` for long steps (prefill chunks): with RELEASE_MIN_ROWS rows or more, each
 * layer is evaluated and its temporaries freed (`afterLayer`: a minor GC + a turn) before the next
 * (see decoderStackReleasing). The KV writes are evaluated as the layers run; the logits are lazy.
 */
export async function forwardSegmentsReleasing(
  m: DecoderModel,
  segments: ForwardSegment[],
  afterLayer: () => Promise<void>,
): Promise<{ logits: mx.array; rows: { start: number; count: number }[] }> {
  const rows = segments.reduce((n, s) => n + s.tokens.length, 0);
  const x = rows >= RELEASE_MIN_ROWS ? await decoderStackReleasing(m, segments, afterLayer) : decoderStack(m, segments);
  return logitsOf(m, segments, x);
}

function logitsOf(m: DecoderModel, segments: ForwardSegment[], stack: mx.array): { logits: mx.array; rows: { start: number; count: number }[] } {
  const x = normedStates(m, segments, stack);
  const logits = linear(m, x, m.weights.lmHead, 'lm_head').reshape(-1, m.config.vocabSize);
  // Sampling, penalties and log-probabilities work on float32 logits whatever the compute dtype.
  return { logits: logits.dtype === mx.float32 ? logits : logits.astype(mx.float32), rows: keptRows(segments).ranges };
}

/** Which rows of the step each segment keeps (see forwardSegments). */
function keptRows(segments: ForwardSegment[]): { keep: number[] | null; ranges: { start: number; count: number }[] } {
  const ranges: { start: number; count: number }[] = [];
  const keep: number[] = [];
  let row = 0;
  let everyRow = true;
  for (const s of segments) {
    const L = s.tokens.length;
    const count = s.lastOnly ? 1 : L;
    ranges.push({ start: keep.length, count });
    for (let i = L - count; i < L; i++) keep.push(row + i);
    if (count !== L) everyRow = false;
    row += L;
  }
  return { keep: everyRow ? null : keep, ranges };
}

/** The final norm ([1, rows, hidden]) of the decoder stack output's kept rows (see keptRows). */
function normedStates(m: DecoderModel, segments: ForwardSegment[], stack: mx.array): mx.array {
  let x = stack;
  if (segments.length === 1) {
    const L = segments[0].tokens.length;
    if (segments[0].lastOnly && L > 1) x = x.index(mx.Slice(), mx.Slice(L - 1, L));
  } else {
    const { keep } = keptRows(segments);
    if (keep) x = mx.take(x, mx.array(keep, mx.int32), 1);
  }
  return mx.fast.rmsNorm(x, m.weights.norm, m.config.rmsNormEps);
}

/**
 * The final-norm hidden states [rows, hidden] of `tokens` on top of `cache` (no lm_head): what
 * embedding models pool. With `lastOnly` only the last position is normed and returned
 * (last-token pooling needs nothing else). Lazy, like `forward`.
 */
export function hiddenStates(m: DecoderModel, tokens: number[], cache: KVCache, lastOnly = false): mx.array {
  const segments = [{ tokens, cache, lastOnly }];
  return normedStates(m, segments, decoderStack(m, segments)).reshape(-1, m.config.hiddenSize);
}
