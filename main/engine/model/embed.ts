// Embeddings from a decoder: run the layers over the input ids (a fresh KV cache, in prefill-sized
// chunks so attention memory stays bounded), take the final-norm hidden states (no lm_head), pool
// them into one vector and L2-normalize it.
//
// Pooling follows what the model folder declares, the way sentence-transformers reads it:
// `modules.json` names the Pooling module's folder (usually `1_Pooling`), whose `config.json` has
// `pooling_mode_lasttoken` / `pooling_mode_mean_tokens` / `pooling_mode_cls_token`. Decoder
// embedding models (Qwen3-Embedding, e5-mistral, gte-Qwen) use last-token pooling, which is also the
// default when the folder says nothing (a README that shows a `mean_pooling` helper counts as "mean").
import { core as mx } from '@frost-beta/mlx';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { EmbeddingPooling } from '../types.ts';
import { hiddenStates } from './base.ts';
import { ModelError, type LoadedModel } from './generator.ts';
import { kvCacheFor } from './kv-cache.ts';
import { afterDecodeStep, afterLargeStep } from './memory.ts';

export interface EmbeddingConfig {
  pooling: EmbeddingPooling;
  /** Where the pooling came from (diagnostics): 'pooling_config' | 'readme' | 'default'. */
  source: 'pooling_config' | 'readme' | 'default';
}

/** Thrown when the signal aborts between chunks or inputs. */
export class EmbedCancelledError extends Error {
  override name = 'EmbedCancelledError';
  constructor() {
    super('embedding cancelled');
  }
}

function readJsonIfPresent(file: string): unknown {
  try {
    return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined;
  } catch {
    return undefined; // a broken optional file is treated as absent: pooling falls back to the default
  }
}

/** Pooling mode from a sentence-transformers Pooling config.json; null when it names none we run. */
export function poolingFromConfig(cfg: unknown): EmbeddingPooling | null {
  if (typeof cfg !== 'object' || cfg === null) return null;
  const c = cfg as Record<string, unknown>;
  if (c.pooling_mode_lasttoken === true) return 'last';
  if (c.pooling_mode_mean_tokens === true || c.pooling_mode_mean_sqrt_len_tokens === true) return 'mean';
  if (c.pooling_mode_cls_token === true) return 'first';
  return null;
}

/** Reads the folder's pooling declaration (modules.json → Pooling folder → config.json, then README). */
export function readEmbeddingConfig(dir: string): EmbeddingConfig {
  let poolingDir = '1_Pooling';
  const modules = readJsonIfPresent(path.join(dir, 'modules.json'));
  if (Array.isArray(modules)) {
    const m = modules.find((x) => typeof x?.type === 'string' && /\.Pooling$|^Pooling$/.test(x.type));
    // Only a plain relative folder name: the path comes from a downloaded file.
    if (m && typeof m.path === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(m.path) && m.path !== '..') poolingDir = m.path;
  }
  const fromCfg = poolingFromConfig(readJsonIfPresent(path.join(dir, poolingDir, 'config.json')));
  if (fromCfg) return { pooling: fromCfg, source: 'pooling_config' };
  try {
    const readme = path.join(dir, 'README.md');
    if (existsSync(readme)) {
      const text = readFileSync(readme, 'utf8').slice(0, 200_000);
      if (/last_token_pool/.test(text)) return { pooling: 'last', source: 'readme' };
      if (/def mean_pooling|average_pool\(/.test(text)) return { pooling: 'mean', source: 'readme' };
    }
  } catch {
    /* unreadable README: default */
  }
  return { pooling: 'last', source: 'default' };
}

/** L2-normalizes `v` in place (float64 accumulation); a zero vector stays zero. */
export function l2Normalize(v: Float32Array): Float32Array {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i] * v[i];
  const n = Math.sqrt(ss);
  if (n > 0) for (let i = 0; i < v.length; i++) v[i] = v[i] / n;
  return v;
}

export interface EmbedOptions {
  pooling: EmbeddingPooling;
  /** Tokens per forward chunk (default 512), like prefill. */
  chunk?: number;
  signal?: AbortSignal;
  /** Skip the L2 normalization (tests compare raw pooled states). Default false. */
  raw?: boolean;
}

/**
 * One input's embedding: float32 [hidden], L2-normalized unless `raw`. Never touches the prefix
 * cache (its own KVCache, dropped at the end). Throws ModelError for bad ids / too long inputs and
 * EmbedCancelledError when `signal` aborts between chunks.
 */
export async function embedTokens(lm: LoadedModel, ids: number[], opts: EmbedOptions): Promise<Float32Array> {
  const v = await pooledState(lm, ids, opts);
  // Minor GC + a turn: this input's arrays (young wrappers, unreachable now that pooledState's
  // frame is gone) are freed before the next input. A full GC follows when RSS grew a lot.
  await afterDecodeStep();
  return opts.raw ? v : l2Normalize(v);
}

/** The pooled final-norm hidden state (not normalized), as float32. */
async function pooledState(lm: LoadedModel, ids: number[], opts: EmbedOptions): Promise<Float32Array> {
  const { config, model, info } = lm;
  if (!Array.isArray(ids) || ids.length === 0) throw new ModelError('invalid_request', 'embedding input is empty');
  for (const t of ids) {
    if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) throw new ModelError('invalid_request', 'embedding input has an invalid token id');
  }
  // No token is generated, so the whole context is usable.
  if (ids.length > info.contextLength) {
    throw new ModelError('context_length_exceeded', `input has ${ids.length} tokens; the model's context is ${info.contextLength}`);
  }
  const chunkSize = Math.max(1, opts.chunk ?? 512);
  const cache = kvCacheFor(config, { slack: chunkSize });
  let pooled: mx.array | null = null; // [hidden]: running sum (mean), first row (first) or last row (last)
  for (let pos = 0; pos < ids.length; pos += chunkSize) {
    if (opts.signal?.aborted) throw new EmbedCancelledError();
    const chunk = ids.slice(pos, pos + chunkSize);
    const isLast = pos + chunk.length >= ids.length;
    if (opts.pooling === 'mean') {
      const h = hiddenStates(model, chunk, cache, false);
      const s = mx.sum(h, 0);
      pooled = pooled ? mx.add(pooled, s) : s;
      mx.eval(pooled, ...cache.arrays());
    } else if (opts.pooling === 'first' && pos === 0) {
      const h = hiddenStates(model, chunk, cache, false);
      pooled = h.index(0);
      mx.eval(pooled, ...cache.arrays());
    } else if (opts.pooling === 'last' && isLast) {
      pooled = hiddenStates(model, chunk, cache, true).index(0);
      mx.eval(pooled, ...cache.arrays());
    } else {
      // A chunk whose states are not pooled (only its KV matters for later chunks). The last
      // chunk of a `first`-pooled input is never needed at all.
      if (opts.pooling === 'first') break;
      hiddenStates(model, chunk, cache, true);
      mx.eval(...cache.arrays());
    }
    if (!isLast) await afterLargeStep(); // frees the chunk's temporaries and lets a cancel arrive
  }
  if (opts.pooling === 'mean') pooled = mx.divide(pooled!, mx.array(ids.length, mx.float32));
  return Float32Array.from(pooled!.astype(mx.float32).tolist() as number[]);
}
