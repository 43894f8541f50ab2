// Linear layers and embedding lookups over a LinearWeight, dense or packed (mlx-community 4/8-bit),
// as mlx-lm's nn.Linear / nn.QuantizedLinear / nn.QuantizedEmbedding do. Every family (dense MLP,
// attention projections, MoE experts) goes through these so the dtype policy's guard and the
// packed-weight path are the same everywhere.
import { core as mx } from '@frost-beta/mlx';
import type { DtypePolicy, KBlockLinear, LinearWeight } from './dtype-policy.ts';

/** mx.quantizedMatmul with the binding's real argument order (the .d.ts says (w, x); it is (x, w)). */
export function quantizedMatmul(
  x: mx.array,
  w: mx.array,
  scales: mx.array,
  biases: mx.array,
  transpose: boolean,
  groupSize: number,
  bits: number,
): mx.array {
  return (mx.quantizedMatmul as unknown as (...a: unknown[]) => mx.array)(x, w, scales, biases, transpose, groupSize, bits);
}

/** y = x · Wᵀ (+ bias). `what` names the layer in the guard's error. */
export function applyLinear(policy: DtypePolicy, x: mx.array, w: LinearWeight, what: string): mx.array {
  policy.assertCompute(x, what);
  let y: mx.array;
  if (w.kind === 'dense') {
    policy.assertCompute(w.weight, what);
    y = mx.matmul(x, w.weight.T);
  } else if (w.kind === 'kblocks') {
    policy.assertCompute(w.blocks, what);
    y = kBlockProduct(x, w);
  } else {
    policy.assertCompute(w.scales, what);
    y = quantizedMatmul(x, w.weight, w.scales, w.biases, true, w.groupSize, w.bits);
  }
  return w.bias ? mx.add(y, w.bias) : y;
}

/**
 * x · Wᵀ for a K-blocked W: x's columns split like W's, then y = x₀·B₀ᵀ + x₁·B₁ᵀ + … as a chain of
 * addmm (each one BLAS call with beta = 1 accumulating into the previous result). Summation order
 * differs from one product only by float32 rounding.
 */
function kBlockProduct(x: mx.array, w: KBlockLinear): mx.array {
  const n = w.parts.length;
  const K = n * w.width;
  const lead = x.shape.slice(0, -1);
  const xs = mx.split(x.reshape(-1, K), n, 1);
  let y = mx.matmul(xs[0], w.parts[0]);
  for (let j = 1; j < n; j++) y = mx.addmm(y, xs[j], w.parts[j]);
  return y.reshape([...lead, w.blocks.shape[1]]);
}

/**
 * The widest block width ≤ `target` (halving down to 64) that splits `inDim` into at least two
 * equal blocks, or null (the matrix stays whole).
 */
export function kBlockWidth(inDim: number, target: number): number | null {
  for (let w = target; w >= 64; w = Math.floor(w / 2)) if (inDim % w === 0 && inDim / w >= 2) return w;
  return null;
}

/**
 * A dense weight re-laid out as K-blocks of `width` columns (see LinearWeight 'kblocks'), evaluated;
 * the dense matrix is no longer referenced by the result (its memory goes with the caller's last
 * reference). Anything that cannot be blocked (packed, inDim not a multiple of width) is returned as is.
 */
export function toKBlocks(w: LinearWeight, width: number): LinearWeight {
  if (w.kind !== 'dense' || w.weight.ndim !== 2) return w;
  const [N, K] = w.weight.shape;
  if (K % width !== 0 || K / width < 2) return w;
  // A transposed view through an element-wise op comes out row-contiguous: [K/width, N, width].
  const blocks = mx.add(w.weight.reshape(N, K / width, width).transpose(1, 0, 2), mx.array(0, w.weight.dtype));
  const parts = Array.from({ length: K / width }, (_, j) => blocks.index(j).T);
  mx.eval(blocks, ...parts);
  return { kind: 'kblocks', blocks, parts, width, bias: w.bias };
}

/** Rows `ids` of an embedding table; a packed table dequantizes only the gathered rows. */
export function embedRows(e: LinearWeight, ids: mx.array): mx.array {
  if (e.kind === 'dense') return mx.take(e.weight, ids, 0);
  if (e.kind === 'kblocks') {
    // A tied lm_head stored as K-blocks: row r is row r of every block, side by side.
    const [n, , width] = e.blocks.shape;
    const rows = mx.take(e.blocks, mx.flatten(ids), 1); // [blocks, ids, width]
    return rows.transpose(1, 0, 2).reshape([...ids.shape, n * width]);
  }
  const w = mx.take(e.weight, ids, 0);
  const s = mx.take(e.scales, ids, 0);
  const b = mx.take(e.biases, ids, 0);
  return mx.dequantize(w, s, b, e.groupSize, e.bits);
}

/**
 * One slice of a stacked weight (e.g. MoE experts stored as [experts, out, in]) along its first
 * axis, kept in the same form (packed stays packed: weight, scales and biases are all stacked).
 */
export function sliceLinear(w: LinearWeight, i: number): LinearWeight {
  const pick = (a: mx.array) => a.index(i);
  const bias = w.bias ? pick(w.bias) : null;
  if (w.kind === 'dense') return { kind: 'dense', weight: pick(w.weight), bias };
  if (w.kind === 'kblocks') throw new Error('sliceLinear: a K-blocked weight is one matrix, not a stack');
  return { ...w, weight: pick(w.weight), scales: pick(w.scales), biases: pick(w.biases), bias };
}
