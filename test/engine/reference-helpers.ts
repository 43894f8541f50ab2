// Engine-side helpers shared by the engine-core tests (the reference itself is in reference.ts).
import { core as mx } from '@frost-beta/mlx';
import { forward } from '../../main/engine/model/base.ts';
import type { LoadedModel } from '../../main/engine/model/generator.ts';
import { KVCache } from '../../main/engine/model/kv-cache.ts';

/** Full-sequence engine logits (fresh cache), one JS array per position. */
export function engineLogits(lm: LoadedModel, tokens: number[]): number[][] {
  const cache = new KVCache(lm.config.numLayers);
  const logits = forward(lm.model, tokens, cache, false);
  mx.eval(logits);
  return logits.tolist() as number[][];
}

/** Engine logits computed incrementally in the given chunk sizes (summing to tokens.length). */
export function engineLogitsChunked(lm: LoadedModel, tokens: number[], chunks: number[]): number[][] {
  const cache = new KVCache(lm.config.numLayers);
  const rows: number[][] = [];
  let pos = 0;
  for (const n of chunks) {
    const logits = forward(lm.model, tokens.slice(pos, pos + n), cache, false);
    mx.eval(logits, ...cache.arrays());
    rows.push(...(logits.tolist() as number[][]));
    pos += n;
  }
  if (pos !== tokens.length) throw new Error('chunks must cover the tokens');
  return rows;
}

/** Deterministic pseudo-random token ids in [0, 151643) (regular vocabulary). */
export function someTokens(n: number, seed = 1): number[] {
  const out: number[] = [];
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x ^ (x >>> 15), 2246822507) + 0x9e3779b9) >>> 0;
    out.push(x % 151643);
  }
  return out;
}
