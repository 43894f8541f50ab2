// Rotary position embeddings per layer: plain / linear (`fast.rope`), and the scaled variants that
// need their own inverse frequencies — llama3, YaRN, Phi-3 longrope — through a manual rotate-half
// rope (this binding's `fast.rope` has no `freqs` argument), plus dynamic NTK (base grows with the
// sequence length) and partial rotary dims (Phi-4-mini). Formulas follow Hugging Face's
// `modeling_rope_utils` and mlx-lm's rope_utils.py.
import { core as mx } from '@frost-beta/mlx';
import type { Llama3RopeScaling, LongRopeScaling, ModelConfig, YarnRopeScaling } from './config.ts';

export interface LayerRope {
  /** Rotated leading dims of each head (the rest pass through). */
  dims: number;
  base: number;
  /** Position scale for `fast.rope` (linear scaling: 1/factor). */
  scale: number;
  /** Inverse frequencies [dims/2] for the manual rope, or null for `fast.rope`. */
  invFreq: mx.array | null;
  /** Scales the rotated dims of q and k (YaRN / longrope attention factor; 1 = none). */
  mscale: number;
  /** Dynamic NTK: factor and the length beyond which the base grows. */
  dynamic: { factor: number; maxPositions: number } | null;
  traditional: boolean;
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

/** YaRN (mlx-lm YarnRoPE): blend of interpolated and extrapolated frequencies over a ramp. */
export function yarnInvFreq(dims: number, base: number, s: YarnRopeScaling): { inv: Float64Array; mscale: number } {
  const corrDim = (rot: number) => (dims * Math.log(s.originalMaxPositionEmbeddings / (rot * 2 * Math.PI))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(corrDim(s.betaFast)), 0);
  let high = Math.min(Math.ceil(corrDim(s.betaSlow)), dims - 1);
  if (low === high) high += 0.001;
  const getM = (scale: number, m: number) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  const half = dims / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const freqExtra = Math.pow(base, (2 * i) / dims); // a wavelength-like "frequency" as mlx-lm names it
    const freqInter = s.factor * freqExtra;
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const mask = 1 - ramp; // 1 = keep the original (extrapolated) frequency
    inv[i] = (freqInter * mask + freqExtra * (1 - mask)) / (freqInter * freqExtra);
  }
  // HF: attention_factor, else the mscale ratio when both are set, else 0.1·ln(factor) + 1.
  const ratio = s.mscale && s.mscaleAllDim ? getM(s.factor, s.mscale) / getM(s.factor, s.mscaleAllDim) : getM(s.factor, 1);
  return { inv, mscale: s.attentionFactor ?? ratio };
}

/**
 * Phi-3 longrope: the long factors when the context served exceeds the original one (as
 * llama.cpp picks by its context size, and mlx-lm always), else the short ones.
 */
export function longRopeInvFreq(dims: number, base: number, s: LongRopeScaling, maxPositions: number): { inv: Float64Array; mscale: number } {
  const factors = maxPositions > s.originalMaxPositionEmbeddings ? s.longFactor : s.shortFactor;
  if (factors.length !== dims / 2) throw new Error(`longrope factors must have ${dims / 2} entries`);
  const inv = new Float64Array(dims / 2);
  for (let i = 0; i < dims / 2; i++) inv[i] = 1 / (factors[i] * Math.pow(base, (2 * i) / dims));
  const ratio = maxPositions / s.originalMaxPositionEmbeddings;
  const mscale = s.attentionFactor ?? (ratio <= 1 ? 1 : Math.sqrt(1 + Math.log(ratio) / Math.log(s.originalMaxPositionEmbeddings)));
  return { inv, mscale };
}

function toArray(f: Float64Array): mx.array {
  const a = mx.array(Array.from(f), mx.float32);
  mx.eval(a);
  return a;
}

/** The rope of layer `layer` (Gemma's sliding layers use their own base and no scaling). */
export function layerRope(c: ModelConfig, layer: number): LayerRope {
  const base = c.layerRopeTheta[layer] ?? c.ropeTheta;
  const s = c.layerRopeScaled[layer] === false ? null : c.ropeScaling;
  const r: LayerRope = { dims: c.ropeDims, base, scale: 1, invFreq: null, mscale: 1, dynamic: null, traditional: c.ropeTraditional };
  if (!s) return r;
  if (s.type === 'linear') r.scale = 1 / s.factor;
  else if (s.type === 'dynamic') r.dynamic = { factor: s.factor, maxPositions: c.maxPositionEmbeddings };
  else if (s.type === 'llama3') r.invFreq = toArray(llama3InvFreq(c.ropeDims, base, s));
  else {
    const { inv, mscale } = s.type === 'yarn' ? yarnInvFreq(c.ropeDims, base, s) : longRopeInvFreq(c.ropeDims, base, s, c.maxPositionEmbeddings);
    r.invFreq = toArray(inv);
    r.mscale = mscale;
  }
  if (r.invFreq && r.traditional) throw new Error('scaled rope with rope_traditional is not supported');
  return r;
}

/** Rotary embedding on [1, heads, L, headDim] at absolute positions offset..offset+L-1. */
export function applyRope(r: LayerRope, x: mx.array, offset: number): mx.array {
  if (!r.invFreq) {
    let base = r.base;
    if (r.dynamic) {
      // HF `_compute_dynamic_ntk_parameters` for the current length (what a cached generate uses).
      const len = Math.max(offset + x.shape[2], r.dynamic.maxPositions);
      const f = r.dynamic.factor;
      base = r.base * Math.pow((f * len) / r.dynamic.maxPositions - (f - 1), r.dims / (r.dims - 2));
    }
    return mx.fast.rope(x, r.dims, r.traditional, base, r.scale, offset);
  }
  const L = x.shape[2];
  const headDim = x.shape[3];
  const half = r.dims / 2;
  const pos = mx.arange(offset, offset + L, 1, mx.float32).reshape(L, 1);
  const ang = mx.multiply(pos, r.invFreq.reshape(1, half)); // [L, half]
  // The attention factor scales the rotated dims only (HF multiplies cos and sin).
  let cos = mx.cos(ang);
  let sin = mx.sin(ang);
  if (r.mscale !== 1) {
    cos = mx.multiply(cos, r.mscale);
    sin = mx.multiply(sin, r.mscale);
  }
  const x1 = x.index('...', mx.Slice(0, half));
  const x2 = x.index('...', mx.Slice(half, r.dims));
  const parts = [mx.subtract(mx.multiply(x1, cos), mx.multiply(x2, sin)), mx.add(mx.multiply(x2, cos), mx.multiply(x1, sin))];
  if (r.dims < headDim) parts.push(x.index('...', mx.Slice(r.dims, headDim)));
  return mx.concatenate(parts, -1);
}
