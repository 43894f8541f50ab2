// Token sampling on MLX arrays (the logits never leave native memory except for the chosen id).
// Order follows Hugging Face's generate(): penalties → temperature → top_k → top_p → min_p →
// sample. Penalties:
//  - repetition_penalty (HF/CTRL): for every distinct token seen in prompt + output, a positive
//    logit is divided by the penalty and a negative one multiplied by it;
//  - presence/frequency (OpenAI): logit -= presence * [count > 0] + frequency * count, counts over
//    the generated tokens only.
// Determinism: with a seed the sampler draws from an MLX threefry key chain (key(seed), split per
// step), which is bit-reproducible across processes; without one the key comes from crypto.
// Log-probabilities (OpenAI `logprobs` / `top_logprobs`), only when requested: reported from the
// RAW model distribution, log_softmax(logits), before penalties, temperature, top-k/p, min-p and any
// decoding constraint (what OpenAI and vLLM's default report; llama-server reports post-sampling
// probabilities instead). The chosen token's log-probability is therefore its raw one even when a
// constraint or a penalty made the sampler pick something else than the raw top-1. The graph
// (logsumexp + argpartition over the vocabulary) is evaluated in the same mx.eval as the draw, so
// it adds no synchronization, only compute (measured on 151,936 logits: ~1.5 ms for the chosen
// token alone, ~5-7 ms with 20 alternatives on this shared 2-core CPU).
import { core as mx } from '@frost-beta/mlx';
import { randomInt } from 'node:crypto';
import type { SamplingParams } from '../types.ts';

export type SamplingControls = Omit<SamplingParams, 'maxTokens' | 'stop'>;

/** Most alternatives per token (OpenAI's top_logprobs limit; also vLLM's and our protocol's). */
export const MAX_TOP_LOGPROBS = 20;

/** Raw-model log-probabilities of one generated token and its most likely alternatives. */
export interface TokenLogprobs {
  id: number;
  /** log_softmax(logits)[id], <= 0. */
  logprob: number;
  /** The `k` most likely ids under the same distribution, most likely first. */
  top: { id: number; logprob: number }[];
}

/** Finite, <= 0 (float rounding can give +1e-7 for a near-certain token; JSON has no -Infinity). */
function cleanLogprob(x: number): number {
  if (Number.isNaN(x)) return -9999;
  return Math.max(-9999, Math.min(0, x));
}

/** Lazy graph of the raw distribution's normalizer and its top-k (indices and log-probabilities). */
function logprobGraph(flat: mx.array, k: number): { lse: mx.array; idx: mx.array | null; vals: mx.array | null } {
  const lse = mx.logsumexp(flat);
  const V = flat.shape[0]!;
  const kk = Math.min(k, V);
  if (kk <= 0) return { lse, idx: null, vals: null };
  // argpartition puts the kk largest in the last kk slots (unordered; `topk` has no indices here).
  const idx = mx.argpartition(flat, V - kk).index(mx.Slice(V - kk, V));
  return { lse, idx, vals: mx.subtract(mx.take(flat, idx, 0), lse) };
}

export interface PenaltyContext {
  /** Distinct tokens of prompt + output (for repetition_penalty). */
  seen: ReadonlySet<number>;
  /** Generated-token counts (for presence/frequency penalties). */
  counts: ReadonlyMap<number, number>;
}

function ids(list: number[]): mx.array {
  return mx.array(list, mx.int32);
}

/** Applies repetition / presence / frequency penalties to 1-D logits. */
export function applyPenalties(logits: mx.array, p: SamplingControls, ctx: PenaltyContext): mx.array {
  let out = logits;
  if (p.repetitionPenalty !== 1 && ctx.seen.size > 0) {
    const idx = ids([...ctx.seen]);
    const cur = mx.take(out, idx, 0);
    const pen = mx.where(mx.less(cur, 0), mx.multiply(cur, p.repetitionPenalty), mx.divide(cur, p.repetitionPenalty));
    out = out.at(idx).add(mx.subtract(pen, cur));
  }
  if ((p.presencePenalty !== 0 || p.frequencyPenalty !== 0) && ctx.counts.size > 0) {
    const toks: number[] = [];
    const delta: number[] = [];
    for (const [t, c] of ctx.counts) {
      toks.push(t);
      delta.push(-(p.presencePenalty + p.frequencyPenalty * c));
    }
    out = out.at(ids(toks)).add(mx.array(delta, mx.float32));
  }
  return out;
}

/**
 * Returns the logits the sampler draws from: penalties, temperature, then top_k / top_p / min_p
 * filtering (filtered tokens get -inf). 1-D in, 1-D out. For temperature 0 only penalties apply.
 */
export function processLogits(logits: mx.array, p: SamplingControls, ctx: PenaltyContext): mx.array {
  const l = applyPenalties(logits.flatten(), p, ctx);
  if (p.temperature <= 0) return l;
  return filterLogits(l, p);
}

/** Temperature, then top_k / top_p / min_p filtering of 1-D (already penalized) logits. */
export function filterLogits(logits: mx.array, p: SamplingControls): mx.array {
  let l = logits;
  if (p.temperature !== 1) l = mx.divide(l, p.temperature);
  const V = l.shape[0];
  const negInf = mx.array(-Infinity, mx.float32);
  if (p.topK > 0 && p.topK < V) {
    // topk returns the k largest values (unsorted) in this binding; keep logits >= the smallest.
    const kth = mx.min(mx.topk(l, p.topK) as unknown as mx.array);
    l = mx.where(mx.less(l, kth), negInf, l);
  }
  if (p.topP > 0 && p.topP < 1) {
    const probs = mx.softmax(l, -1);
    const sorted = mx.sort(probs); // ascending
    const cum = mx.cumsum(sorted);
    // Smallest probability still inside the top-p nucleus (the token that crosses p is kept).
    const thr = mx.min(mx.where(mx.greater(cum, 1 - p.topP), sorted, mx.array(Infinity, mx.float32)));
    l = mx.where(mx.less(probs, thr), negInf, l);
  }
  if (p.minP > 0) {
    // Keep tokens with prob >= min_p * max prob  <=>  logit >= max logit + log(min_p).
    const thr = mx.add(mx.max(l), Math.log(p.minP));
    l = mx.where(mx.less(l, thr), negInf, l);
  }
  return l;
}

/**
 * What the sampler needs from a decoding constraint (main/engine/constrain's TokenConstraint):
 * a cheap check of one sampled id, and the full set of allowed ids when that check fails.
 */
export interface SamplingConstraint {
  accepts(id: number): boolean;
  allowedTokens(): number[];
  /**
   * Optional, preferred: the allowed set as the shorter list — `deny` lists every refused id of
   * the vocabulary (inside strings nearly all ids are allowed, and an MLX index array of ~147k ids
   * alone costs ~25 ms), `allow` the allowed ones. The lists may be cached ones: read only.
   */
  mask?(): { readonly allow: readonly number[] } | { readonly deny: readonly number[] };
}

/** Maps a user seed (any finite number) to an MLX key seed (non-negative safe integer). */
function keySeed(seed: number): number {
  const s = Math.trunc(seed);
  return s >= 0 ? Math.min(s, Number.MAX_SAFE_INTEGER) : Math.min(-s * 2 + 1, Number.MAX_SAFE_INTEGER);
}

/** Stateful sampler for one generation. */
export class Sampler {
  private key: mx.array;
  private readonly seen: Set<number>;
  private readonly counts = new Map<number, number>();
  private readonly needsContext: boolean;
  /** Alternatives to report per token; -1 = no log-probabilities. */
  private readonly topLogprobs: number;
  /** Log-probabilities of the token the last sample() chose (null when not requested). */
  lastLogprobs: TokenLogprobs | null = null;

  constructor(
    private readonly params: SamplingControls,
    promptIds: readonly number[],
    opts: { logprobs?: number | null } = {},
  ) {
    const k = opts.logprobs;
    this.topLogprobs = k === undefined || k === null || !(k >= 0) ? -1 : Math.min(Math.floor(k), MAX_TOP_LOGPROBS);
    this.key = mx.random.key(params.seed === undefined ? randomInt(2 ** 47) : keySeed(params.seed));
    this.needsContext = params.repetitionPenalty !== 1 || params.presencePenalty !== 0 || params.frequencyPenalty !== 0;
    this.seen = new Set(params.repetitionPenalty !== 1 ? promptIds : []);
  }

  /**
   * Chooses the next token from logits [1, V] or [V]; synchronously evaluates. With a constraint
   * (llama.cpp's order): draw from the unconstrained distribution first; if the constraint refuses
   * that token, draw again among the allowed ids only (penalties and filters applied to them).
   * Returns -1 when the constraint allows nothing (a dead end; cannot happen with our recognizer).
   */
  sample(logits: mx.array, constraint?: SamplingConstraint | null): number {
    const p = this.params;
    const flat = logits.flatten();
    const base = this.needsContext ? applyPenalties(flat, p, this.context) : flat;
    const lp = this.topLogprobs >= 0 ? logprobGraph(flat, this.topLogprobs) : null;
    let id: number;
    if (!lp) id = this.draw(base);
    else {
      // One mx.eval for the draw and the log-probability graph: no extra synchronization.
      const idArr = this.drawArray(base);
      const chosen = mx.subtract(mx.take(flat, idArr, 0), lp.lse);
      mx.eval(idArr, chosen, lp.lse, ...(lp.idx ? [lp.idx, lp.vals!] : []));
      id = Number(idArr.item());
      const top: { id: number; logprob: number }[] = [];
      if (lp.idx) {
        const ids = lp.idx.tolist() as number[];
        const vals = lp.vals!.tolist() as number[];
        ids.forEach((t, i) => top.push({ id: t, logprob: cleanLogprob(vals[i]!) }));
        top.sort((a, b) => b.logprob - a.logprob || a.id - b.id);
      }
      this.lastLogprobs = { id, logprob: cleanLogprob(Number(chosen.item())), top };
    }
    const first = id;
    if (constraint && !constraint.accepts(id)) {
      const m = constraint.mask ? constraint.mask() : { allow: constraint.allowedTokens() };
      if ('deny' in m) {
        // Refused ids get -inf; the draw runs over the whole (penalized) vocabulary.
        const masked = m.deny.length > 0 ? base.at(mx.array(m.deny as number[], mx.int32)).add(mx.array(-Infinity, mx.float32)) : base;
        id = this.draw(masked);
      } else {
        const allowed = m.allow;
        if (allowed.length === 0) return -1;
        if (allowed.length === 1) id = allowed[0]!;
        else {
          const sub = mx.take(base, mx.array(allowed as number[], mx.int32), 0);
          id = allowed[this.draw(sub)]!;
        }
      }
    }
    if (lp && this.lastLogprobs && id !== first && id >= 0) {
      // The constraint refused the first draw: report the raw (unconstrained) log-probability of
      // the token actually chosen (one more small eval, only on this path).
      const known = this.lastLogprobs.top.find((t) => t.id === id);
      const v = known ? known.logprob : Number(mx.subtract(mx.take(flat, mx.array(id, mx.int32), 0), lp.lse).item());
      this.lastLogprobs = { id, logprob: cleanLogprob(v), top: this.lastLogprobs.top };
    }
    this.accept(id);
    return id;
  }

  /** Index drawn from 1-D penalized logits (argmax at temperature 0). */
  private draw(l: mx.array): number {
    return Number(this.drawArray(l).item());
  }

  /** The draw as a lazy scalar array (evaluated by the caller). */
  private drawArray(l: mx.array): mx.array {
    const p = this.params;
    if (p.temperature <= 0) return mx.argmax(l);
    const keys = mx.random.split(this.key, 2);
    this.key = keys.index(0);
    return mx.random.categorical(filterLogits(l, p), -1, undefined, undefined, keys.index(1));
  }

  /** Records a generated token for the penalties. */
  accept(id: number): void {
    if (!this.needsContext) return;
    if (this.params.repetitionPenalty !== 1) this.seen.add(id);
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
  }

  get context(): PenaltyContext {
    return { seen: this.seen, counts: this.counts };
  }
}
