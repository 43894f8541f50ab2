// Linear layers and embedding lookups over a LinearWeight, dense or packed (mlx-community 4/8-bit),
// as mlx-lm's nn.Linear / nn.QuantizedLinear / nn.QuantizedEmbedding do. Every family (dense MLP,
// attention projections, MoE experts) goes through these so the dtype policy's guard and the
// packed-weight path are the same everywhere.
import { core as mx } from '@frost-beta/mlx';
import type { DtypePolicy, LinearWeight } from './dtype-policy.ts';

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
  } else {
    policy.assertCompute(w.scales, what);
    y = quantizedMatmul(x, w.weight, w.scales, w.biases, true, w.groupSize, w.bits);
  }
  return w.bias ? mx.add(y, w.bias) : y;
}

/** Rows `ids` of an embedding table; a packed table dequantizes only the gathered rows. */
export function embedRows(e: LinearWeight, ids: mx.array): mx.array {
  if (e.kind === 'dense') return mx.take(e.weight, ids, 0);
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
  return { ...w, weight: pick(w.weight), scales: pick(w.scales), biases: pick(w.biases), bias };
}
