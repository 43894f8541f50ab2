// Engine-side helpers shared by the engine-core tests (the reference itself is in reference.ts).
import { core as mx } from '@frost-beta/mlx';
import { forward } from '../../main/engine/model/base.ts';
import { generateAll, loadModel, type LoadedModel } from '../../main/engine/model/generator.ts';
import { DEFAULT_SAMPLING } from '../../main/engine/types.ts';
import { loadTextPipeline, TOOL_MARKER_TOKENS, type TextPipeline } from '../../main/engine/text/index.ts';
import { buildTokenTable, type TokenTable } from '../../main/engine/constrain/index.ts';
import { buildTinyModel } from '../helpers/tiny-model.ts';
import { kvCacheFor } from '../../main/engine/model/kv-cache.ts';

/** The engine's greedy tokens for `prompt` (no EOS stop, nothing cached). */
export async function engineGreedy(lm: LoadedModel, prompt: number[], n: number): Promise<number[]> {
  const r = await generateAll(lm, null, {
    promptIds: prompt,
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: n },
    eosTokenIds: [],
    cachePrompt: false,
  });
  return r.tokens;
}

/** Full-sequence engine logits (fresh cache), one JS array per position. */
export function engineLogits(lm: LoadedModel, tokens: number[]): number[][] {
  const cache = kvCacheFor(lm.config);
  const logits = forward(lm.model, tokens, cache, false);
  mx.eval(logits);
  return logits.tolist() as number[][];
}

/** Engine logits computed incrementally in the given chunk sizes (summing to tokens.length). */
export function engineLogitsChunked(lm: LoadedModel, tokens: number[], chunks: number[]): number[][] {
  const cache = kvCacheFor(lm.config);
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

/**
 * The generator-level fixture of the constrained-decoding and logprobs tests: a tiny random-weight
 * qwen3 model with the real Qwen3 tokenizer, its text pipeline, the vocabulary as bytes and the EOS
 * ids the engine process would use.
 */
export async function loadGeneratorFixture(): Promise<{ lm: LoadedModel; text: TextPipeline; table: TokenTable; eos: Set<number> }> {
  const dir = await buildTinyModel({ family: 'qwen3' });
  const lm = await loadModel(dir);
  const text = await loadTextPipeline(dir);
  const table = buildTokenTable(text.tokenizer, lm.config.vocabSize, new Set(TOOL_MARKER_TOKENS));
  const eos = new Set([...lm.info.eosTokenIds, ...text.eosTokenIds]);
  return { lm, text, table, eos };
}
