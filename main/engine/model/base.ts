// The shared decoder forward pass (Llama block: RMSNorm → GQA attention with rope → RMSNorm →
// SwiGLU MLP), parameterized by ModelConfig switches that the family files set (q/k/v bias,
// q/k norm, rope scaling). Follows the structure of mlx-lm's llama.py, written for this binding:
//  - `fast.rope` takes a JS-number offset and has no `freqs` argument, so llama3 rope scaling
//    uses a manual rotate-half rope with precomputed inverse frequencies;
//  - `scaledDotProductAttention(..., 'causal')` is silently ignored here, so steps get an
//    explicit additive [L, capacity] mask (which also hides the KV buffer's unused slots);
//  - matmul/SDPA are guarded by the dtype policy (f16/bf16 would abort the process).
import { core as mx } from '@frost-beta/mlx';
import type { ModelConfig, Llama3RopeScaling } from './config.ts';
import type { DtypePolicy, LinearWeight } from './dtype-policy.ts';
import type { KVCache } from './kv-cache.ts';
import { applyLinear, embedRows } from './linear.ts';
import type { LayerWeights, ModelWeights } from './weights.ts';

export interface DecoderModel {
  config: ModelConfig;
  weights: ModelWeights;
  policy: DtypePolicy;
  /** Inverse rope frequencies [headDim/2] for the manual (llama3-scaled) rope, else null. */
  ropeInvFreq: mx.array | null;
}

/** HF `_compute_llama3_parameters`: per-frequency scaling with a smooth band. */
export function llama3InvFreq(headDim: number, theta: number, s: Llama3RopeScaling): Float64Array {
  const half = headDim / 2;
  const out = new Float64Array(half);
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const inv = 1 / Math.pow(theta, (2 * i) / headDim);
    const wavelen = (2 * Math.PI) / inv;
    if (wavelen < highWavelen) out[i] = inv;
    else if (wavelen > lowWavelen) out[i] = inv / s.factor;
    else {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = (1 - smooth) * (inv / s.factor) + smooth * inv;
    }
  }
  return out;
}

export function createDecoderModel(config: ModelConfig, weights: ModelWeights, policy: DtypePolicy): DecoderModel {
  let ropeInvFreq: mx.array | null = null;
  if (config.ropeScaling?.type === 'llama3') {
    const f = llama3InvFreq(config.headDim, config.ropeTheta, config.ropeScaling);
    ropeInvFreq = mx.array(Array.from(f), mx.float32);
    mx.eval(ropeInvFreq);
  }
  return { config, weights, policy, ropeInvFreq };
}

function linear(m: DecoderModel, x: mx.array, w: LinearWeight, what: string): mx.array {
  return applyLinear(m.policy, x, w, what);
}

function embed(m: DecoderModel, ids: mx.array): mx.array {
  return embedRows(m.weights.embed, ids);
}

/** Rotary embedding on [1, heads, L, headDim] at absolute positions offset..offset+L-1. */
function rope(m: DecoderModel, x: mx.array, offset: number): mx.array {
  const c = m.config;
  if (!m.ropeInvFreq) {
    const scale = c.ropeScaling?.type === 'linear' ? 1 / c.ropeScaling.factor : 1;
    return mx.fast.rope(x, c.headDim, c.ropeTraditional, c.ropeTheta, scale, offset);
  }
  const L = x.shape[2];
  const half = c.headDim / 2;
  const pos = mx.arange(offset, offset + L, 1, mx.float32).reshape(L, 1);
  const ang = mx.multiply(pos, m.ropeInvFreq.reshape(1, half)); // [L, half]
  const cos = mx.cos(ang).astype(x.dtype); // angles in float32; the product stays in the compute dtype
  const sin = mx.sin(ang).astype(x.dtype);
  const x1 = x.index('...', mx.Slice(0, half));
  const x2 = x.index('...', mx.Slice(half, c.headDim));
  return mx.concatenate(
    [mx.subtract(mx.multiply(x1, cos), mx.multiply(x2, sin)), mx.add(mx.multiply(x2, cos), mx.multiply(x1, sin))],
    -1,
  );
}

/**
 * Additive causal mask [L, width]: query i (absolute position offset+i) sees keys 0..offset+i.
 * `width` is the KV buffer capacity (>= offset+L); slots past the current position are masked.
 */
export function causalMask(L: number, offset: number, width = offset + L): mx.array {
  const rows = mx.arange(offset, offset + L, 1, mx.int32).reshape(L, 1);
  const cols = mx.arange(0, width, 1, mx.int32).reshape(1, width);
  return mx.where(mx.lessEqual(cols, rows), mx.array(0, mx.float32), mx.array(-Infinity, mx.float32));
}

function attention(
  m: DecoderModel,
  lw: LayerWeights,
  layerIdx: number,
  x: mx.array,
  mask: mx.array | undefined,
  cache: KVCache,
  offset: number,
  width: number,
): mx.array {
  const c = m.config;
  const L = x.shape[1];
  let q = linear(m, x, lw.q, 'q_proj').reshape(1, L, c.numHeads, c.headDim);
  let k = linear(m, x, lw.k, 'k_proj').reshape(1, L, c.numKvHeads, c.headDim);
  let v = linear(m, x, lw.v, 'v_proj').reshape(1, L, c.numKvHeads, c.headDim);
  if (lw.qNorm) q = mx.fast.rmsNorm(q, lw.qNorm, c.rmsNormEps);
  if (lw.kNorm) k = mx.fast.rmsNorm(k, lw.kNorm, c.rmsNormEps);
  q = rope(m, q.transpose(0, 2, 1, 3), offset);
  k = rope(m, k.transpose(0, 2, 1, 3), offset);
  v = v.transpose(0, 2, 1, 3);
  let [keys, values] = cache.update(layerIdx, k, v);
  if (width < keys.shape[2]) {
    // Multi-token steps attend only over the slots in use (a capacity reserved ahead for the rest
    // of the prompt would otherwise be scored and softmaxed for nothing). The views are freed
    // with the step's other temporaries before the next write (generator GC policy).
    const used = mx.Slice(0, width);
    keys = keys.index(mx.Slice(), mx.Slice(), used);
    values = values.index(mx.Slice(), mx.Slice(), used);
  }
  m.policy.assertCompute(q, 'attention');
  m.policy.assertCompute(keys, 'attention');
  const o = mx.fast.scaledDotProductAttention(q, keys, values, 1 / Math.sqrt(c.headDim), mask);
  return linear(m, o.transpose(0, 2, 1, 3).reshape(1, L, c.numHeads * c.headDim), lw.o, 'o_proj');
}

function mlp(m: DecoderModel, lw: LayerWeights, x: mx.array): mx.array {
  const g = linear(m, x, lw.gate, 'gate_proj');
  const u = linear(m, x, lw.up, 'up_proj');
  const act = mx.multiply(mx.multiply(g, mx.sigmoid(g)), u); // SwiGLU: silu(gate) * up
  return linear(m, act, lw.down, 'down_proj');
}

/**
 * The decoder blocks over `tokens` on top of `cache` (which is extended and committed): the
 * residual stream [1, L, hidden] before the final norm. Shared by `forward` (logits) and
 * `hiddenStates` (embeddings) so both run exactly the same layers.
 */
function decoderStack(m: DecoderModel, tokens: number[], cache: KVCache): mx.array {
  const c = m.config;
  const L = tokens.length;
  if (L === 0) throw new Error('forward needs at least one token');
  const offset = cache.offset;
  const capacity = cache.reserve(L);
  // One-token steps attend over the whole buffer capacity, masked (no views of the buffers: a live
  // view would make the next in-place write copy them); multi-token steps over the used slots only.
  const width = L > 1 ? offset + L : capacity;
  const ids = mx.array(tokens, mx.int32);
  let x = embed(m, ids).reshape(1, L, c.hiddenSize);
  let mask = L > 1 || width > offset + L ? causalMask(L, offset, width) : undefined;
  if (mask && mask.dtype !== m.policy.computeDtype) mask = mask.astype(m.policy.computeDtype);
  const ws = m.weights;
  for (let i = 0; i < ws.layers.length; i++) {
    const lw = ws.layers[i];
    x = mx.add(x, attention(m, lw, i, mx.fast.rmsNorm(x, lw.inputNorm, c.rmsNormEps), mask, cache, offset, width));
    x = mx.add(x, mlp(m, lw, mx.fast.rmsNorm(x, lw.postNorm, c.rmsNormEps)));
  }
  cache.commit(L);
  return x;
}

/**
 * Runs `tokens` through the decoder on top of `cache` (which is extended and committed).
 * Returns logits [rows, vocab]; with `lastOnly` only the last position goes through the final
 * norm and lm_head (prefill never needs the others). The result is lazy: the caller evaluates it
 * together with `cache.arrays()`.
 */
export function forward(m: DecoderModel, tokens: number[], cache: KVCache, lastOnly = true): mx.array {
  const x = normedStates(m, tokens, cache, lastOnly);
  const logits = linear(m, x, m.weights.lmHead, 'lm_head').reshape(-1, m.config.vocabSize);
  // Sampling, penalties and log-probabilities work on float32 logits whatever the compute dtype.
  return logits.dtype === mx.float32 ? logits : logits.astype(mx.float32);
}

/** The decoder stack + final norm ([1, rows, hidden]); with `lastOnly` only the last position. */
function normedStates(m: DecoderModel, tokens: number[], cache: KVCache, lastOnly: boolean): mx.array {
  const L = tokens.length;
  let x = decoderStack(m, tokens, cache);
  if (lastOnly && L > 1) x = x.index(mx.Slice(), mx.Slice(L - 1, L));
  return mx.fast.rmsNorm(x, m.weights.norm, m.config.rmsNormEps);
}

/**
 * The final-norm hidden states [rows, hidden] of `tokens` on top of `cache` (no lm_head): what
 * embedding models pool. With `lastOnly` only the last position is normed and returned
 * (last-token pooling needs nothing else). Lazy, like `forward`.
 */
export function hiddenStates(m: DecoderModel, tokens: number[], cache: KVCache, lastOnly = false): mx.array {
  return normedStates(m, tokens, cache, lastOnly).reshape(-1, m.config.hiddenSize);
}
