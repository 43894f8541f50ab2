// Sparse mixture-of-experts MLP (Qwen3-MoE; mlx-lm's Qwen3MoeSparseMoeBlock + SwitchGLU):
// router `mlp.gate` → softmax → top-k experts per token (renormalised when norm_topk_prob) →
// each chosen expert's SwiGLU on its tokens, weighted and summed.
//
// Why routing happens in JS: this binding (0.0.7) has no gather_mm / gather_qmm, and gathering
// the chosen experts' matrices with `take` would copy them every step. Instead the router
// probabilities are read back (one small sync per MoE layer), the tokens are grouped by expert,
// and each used expert runs as plain matmuls on a view of its slice of the stacked tensor — so a
// decode step reads only the top-k experts' weights, and a prefill chunk reads each used expert
// once for all of its tokens (mlx-lm's sorted gather). Results are put back in token order with
// one `take` and summed over the k slots.
import { core as mx } from '@frost-beta/mlx';
import { gatedAct } from './activations.ts';
import type { ModelConfig } from './config.ts';
import type { LinearWeight, RawModuleTensors } from './dtype-policy.ts';
import { sliceLinear } from './linear.ts';
import type { WeightLoader } from './weights.ts';

export interface MoeWeights {
  /** Router [numExperts, hidden]. */
  router: LinearWeight;
  /** Experts stacked on the first axis: gate/up [E, moeI, hidden], down [E, hidden, moeI]. */
  gate: LinearWeight;
  up: LinearWeight;
  down: LinearWeight;
  /** Per-expert views of the stacked tensors, made on first use. */
  experts: ({ gate: LinearWeight; up: LinearWeight; down: LinearWeight } | undefined)[];
}

export type LinearFn = (x: mx.array, w: LinearWeight, what: string) => mx.array;

function expert(w: MoeWeights, e: number) {
  let x = w.experts[e];
  if (!x) x = w.experts[e] = { gate: sliceLinear(w.gate, e), up: sliceLinear(w.up, e), down: sliceLinear(w.down, e) };
  return x;
}

export function moeArrays(w: MoeWeights): mx.array[] {
  const out: mx.array[] = [];
  for (const l of [w.router, w.gate, w.up, w.down]) {
    out.push(l.kind === 'kblocks' ? l.blocks : l.weight);
    if (l.kind === 'quantized') out.push(l.scales, l.biases);
    if (l.bias) out.push(l.bias);
  }
  return out;
}

/**
 * Top-k routing of one token from its router probabilities (softmax already applied): expert ids
 * (highest first) and their weights, renormalised to sum to 1 when `norm`.
 */
export function routeToken(probs: readonly number[], k: number, norm: boolean): { ids: number[]; weights: number[] } {
  const ids = probs.map((_, i) => i).sort((a, b) => probs[b] - probs[a] || a - b).slice(0, k);
  let weights = ids.map((i) => probs[i]);
  if (norm) {
    const s = weights.reduce((a, b) => a + b, 0);
    weights = weights.map((w) => w / s);
  }
  return { ids, weights };
}

/** The MoE MLP on x [1, L, hidden] → [1, L, hidden]. */
export function moeMlp(c: ModelConfig, w: MoeWeights, x: mx.array, lin: LinearFn): mx.array {
  const moe = c.moe!;
  const L = x.shape[1];
  const H = c.hiddenSize;
  const k = moe.topK;
  const x2 = x.reshape(L, H);
  const probs = mx.softmax(lin(x2, w.router, 'mlp.gate'), -1, true);
  mx.eval(probs); // the one sync: routing decides which weights are read
  const rows = probs.tolist() as number[][];

  // Group (token, slot) pairs by expert, in ascending expert order.
  const groups = new Map<number, { tokens: number[]; weights: number[]; slots: number[] }>();
  rows.forEach((p, t) => {
    const r = routeToken(p, k, moe.normTopkProb);
    r.ids.forEach((e, j) => {
      let g = groups.get(e);
      if (!g) groups.set(e, (g = { tokens: [], weights: [], slots: [] }));
      g.tokens.push(t);
      g.weights.push(r.weights[j]);
      g.slots.push(t * k + j);
    });
  });

  const outs: mx.array[] = [];
  const rowOfSlot = new Array<number>(L * k);
  let row = 0;
  for (const e of [...groups.keys()].sort((a, b) => a - b)) {
    const g = groups.get(e)!;
    const ex = expert(w, e);
    const xe = L === 1 ? x2 : mx.take(x2, mx.array(g.tokens, mx.int32), 0);
    const h = gatedAct(c, lin(xe, ex.gate, 'switch_mlp.gate_proj'), lin(xe, ex.up, 'switch_mlp.up_proj'));
    const y = lin(h, ex.down, 'switch_mlp.down_proj');
    outs.push(mx.multiply(y, mx.array(g.weights, mx.float32).astype(y.dtype).reshape(g.weights.length, 1)));
    for (const s of g.slots) rowOfSlot[s] = row++;
  }
  const all = mx.concatenate(outs, 0); // [L*k, H], expert-sorted
  if (L === 1) return mx.sum(all, 0, true).reshape(1, 1, H);
  const tokenMajor = mx.take(all, mx.array(rowOfSlot, mx.int32), 0).reshape(L, k, H);
  return mx.sum(tokenMajor, 1).reshape(1, L, H);
}

/**
 * Loads one MoE block at `stem` (= model.layers.N.mlp): the router `gate` and the experts, either
 * stacked as mlx-lm stores them (`switch_mlp.{gate,up,down}_proj`, quantized per expert slice) or
 * as Hugging Face's per-expert modules (`experts.E.{gate,up,down}_proj`), stacked here.
 */
export function loadMoeWeights(ld: WeightLoader, stem: string, c: ModelConfig): MoeWeights {
  const { numExperts: E, moeIntermediateSize: I } = c.moe!;
  const H = c.hiddenSize;
  const router = ld.lin(`${stem}.gate`, E, H, false);
  const proj = (name: string, outDim: number, inDim: number): LinearWeight => {
    const stacked = `${stem}.switch_mlp.${name}`;
    let raw = ld.takeRaw(stacked);
    let quant = ld.quantFor(stacked);
    if (!raw) {
      const parts: RawModuleTensors[] = [];
      for (let e = 0; e < E; e++) {
        const p = ld.takeRaw(`${stem}.experts.${e}.${name}`);
        if (!p) throw ld.error(`checkpoint is missing tensor "${stacked}.weight" (or "${stem}.experts.${e}.${name}.weight")`);
        parts.push(p);
      }
      const stack = (f: (p: RawModuleTensors) => mx.array | undefined) => {
        const xs = parts.map(f);
        return xs.every((a) => a) ? mx.stack(xs as mx.array[], 0) : undefined;
      };
      raw = { weight: stack((p) => p.weight)!, scales: stack((p) => p.scales), biases: stack((p) => p.biases) };
      quant = ld.quantFor(`${stem}.experts.0.${name}`) ?? quant;
    }
    const w = ld.policy.prepareLinear(raw, raw.scales ? quant : null);
    const shape = w.weight.shape;
    const cols = w.kind === 'dense' ? shape[2] : (shape[2] * 32) / w.bits;
    if (shape.length !== 3 || shape[0] !== E || shape[1] !== outDim || cols !== inDim) {
      throw ld.error(`tensor "${stacked}.weight" has shape [${shape.join(', ')}] but config.json implies [${E}, ${outDim}, ${inDim}]`);
    }
    ld.count(E * outDim * inDim);
    return w;
  };
  return { router, gate: proj('gate_proj', I, H), up: proj('up_proj', I, H), down: proj('down_proj', H, I), experts: [] };
}
