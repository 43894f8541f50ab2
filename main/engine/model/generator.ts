// Model loading and the token generator: prefix-cache lookup → chunked prefill → one-token decode
// steps, with cancellation between chunks/steps, EOS/max-token stopping and the memory policy.
// Text concerns (detokenizing, stop strings) belong to the caller, which may stop early by calling
// `.return()` on the generator.
import { core as mx } from '@frost-beta/mlx';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import type { EngineErrorCode, ModelInfo, SamplingParams } from '../types.ts';
import { createDecoderModel, type DecoderModel } from './base.ts';
import { directRunner, type BatchScheduler } from './batch.ts';
import { parseModelConfig, type ModelConfig } from './config.ts';
import { defaultDtypePolicy, dtypeName, policyFromChoice, type DtypePolicy, type KBlockPlan } from './dtype-policy.ts';
import type { PolicyChoice } from '../probe/policy-choice.ts';
import { kvCacheFor, KV_STEP, type KVCache } from './kv-cache.ts';
import { DEFAULT_KV_POOL_BYTES, KVBufferPool } from './kv-pool.ts';
import { kvSlidingOf } from './kv-size.ts';
import { DraftPolicy, MAX_DRAFT, NgramIndex, type NgramCache } from './lookup.ts';
import { afterLargeStep } from './memory.ts';
import type { PrefixCache } from './prefix-cache.ts';
import { Sampler, type SamplingConstraint, type TokenLogprobs } from './sampling.ts';
import { buildModelWeights, peekCheckpointFloatDtype, weightBytes } from './weights.ts';
import { readJsonBounded } from '../model-folder/index.ts';

/** An error with an engine error code; messages never contain file-system paths. */
export class ModelError extends Error {
  override name = 'ModelError';
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface LoadedModel {
  info: ModelInfo;
  config: ModelConfig;
  model: DecoderModel;
  /** KV buffers reused across this model's sequences (kv-pool.ts); null/absent = fresh buffers each time. */
  kvPool?: KVBufferPool | null;
}

export interface LoadOptions {
  policy?: DtypePolicy;
  /** Probe + setting decision (main/engine/probe/policy-choice.ts); used when `policy` is not given. */
  choice?: PolicyChoice;
  /** Display id; defaults to the folder name. */
  id?: string;
  /** false: keep q/k/v and gate/up as separate matrices (weights.ts fuseRows; for A/B benches). */
  fuseProjections?: boolean;
  /** Which matrices to store as K-blocks, overriding the policy's plan ({} = none; tests and A/B benches). */
  kBlocks?: KBlockPlan;
  /** Budget of the KV buffer pool (kv-pool.ts); 0 = no pool. Default DEFAULT_KV_POOL_BYTES. */
  kvPoolBytes?: number;
}

function readJson(dir: string, name: string, required: boolean): unknown {
  const r = readJsonBounded(path.join(dir, name));
  if (r.ok) return r.value;
  if (r.reason === 'is missing' && !required) return undefined;
  throw new ModelError('model_load_failed', r.reason === 'is missing' ? `model folder has no ${name}` : `${name} ${r.reason}`);
}

function idList(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => Number.isInteger(x));
  return [];
}

/** Stable hash of config + checkpoint layout (safetensors headers and sizes) + compute policy. */
function fingerprint(dir: string, files: string[], policy: DtypePolicy): string {
  const h = createHash('sha256');
  h.update(readFileSync(path.join(dir, 'config.json')));
  h.update(`policy:${policy.name}`);
  for (const f of files) {
    const p = path.join(dir, f);
    const size = statSync(p).size;
    h.update(`${f}:${size}`);
    const fd = openSync(p, 'r');
    try {
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const n = Math.min(Number(lenBuf.readBigUInt64LE(0)), 64 * 1024 * 1024);
      // The header (names, dtypes, shapes, offsets) plus the first 64 KiB of data.
      const buf = Buffer.alloc(Math.min(8 + n + 65536, size));
      readSync(fd, buf, 0, buf.length, 0);
      h.update(buf);
    } finally {
      closeSync(fd);
    }
  }
  return h.digest('hex').slice(0, 32);
}

/** Loads a Hugging Face / mlx-community model folder. */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const policy = opts.policy ?? (opts.choice ? policyFromChoice(opts.choice, peekCheckpointFloatDtype(dir)) : defaultDtypePolicy());
  let config: ModelConfig;
  try {
    config = parseModelConfig(readJson(dir, 'config.json', true));
  } catch (e) {
    if (e instanceof ModelError) throw e;
    throw new ModelError('model_load_failed', (e as Error).message);
  }
  const gen = readJson(dir, 'generation_config.json', false) as Record<string, unknown> | undefined;
  const eos = [...new Set([...config.eosTokenIds, ...idList(gen?.eos_token_id)])];
  let built: Awaited<ReturnType<typeof buildModelWeights>>;
  try {
    built = await buildModelWeights(dir, config, policy, afterLargeStep, { fuseProjections: opts.fuseProjections, kBlocks: opts.kBlocks });
  } catch (e) {
    throw new ModelError('model_load_failed', (e as Error).message);
  }
  const model = createDecoderModel(config, built.weights, policy);
  const computeBytes = policy.computeDtype.size;
  const info: ModelInfo = {
    id: opts.id ?? path.basename(path.resolve(dir)),
    architecture: config.modelType,
    numParameters: built.info.numParameters,
    numLayers: config.numLayers,
    numKvHeads: config.numKvHeads,
    headDim: config.headDim,
    hiddenSize: config.hiddenSize,
    vocabSize: config.vocabSize,
    contextLength: config.contextLength,
    checkpointDtype: built.info.checkpointDtype,
    quantization: config.quantization,
    computeDtype: dtypeName(policy.computeDtype),
    dtypePolicy: policy.name,
    weightBytes: weightBytes(built.weights),
    kvBytesPerToken: 2 * config.numLayers * config.numKvHeads * config.headDim * computeBytes,
    kvSliding: kvSlidingOf(config.layerWindows, 2 * config.numKvHeads * config.headDim * computeBytes),
    fingerprint: fingerprint(dir, built.info.files, policy),
    eosTokenIds: eos,
  };
  const poolBytes = opts.kvPoolBytes ?? DEFAULT_KV_POOL_BYTES;
  return { info, config, model, kvPool: poolBytes > 0 ? new KVBufferPool(poolBytes) : null };
}

export interface TokenRequest {
  promptIds: number[];
  /** `stop` is ignored here (the text layer handles stop strings). */
  sampling: SamplingParams;
  /** Whether this prompt's KV may be kept in the prefix cache (default true). */
  cachePrompt?: boolean;
  /** Extra end-of-sequence ids (e.g. the tokenizer's), merged with the model's. */
  eosTokenIds?: number[];
  /** Prefill chunk size (default DEFAULT_PREFILL_CHUNK). */
  prefillChunk?: number;
  /** Constrained decoding (main/engine/constrain's TokenConstraint): only allowed tokens are sampled. */
  constraint?: DecodingConstraint | null;
  /**
   * Report log-probabilities: each yielded token carries its raw-model log-probability and this many
   * top alternatives (0..20, see sampling.ts). Absent/null = off (no cost).
   */
  logprobs?: number | null;
  /**
   * Lookup decoding (lookup.ts): draft from n-grams of prompt + output (and `cache`, the model's
   * cross-request n-gram cache, which also learns this run's output) and verify the drafts in one
   * pass. Output is what plain decoding gives (identical tokens when greedy or seeded). Absent = off.
   */
  lookup?: { cache: NgramCache | null } | null;
}

/** One generated token (EOS ids are never yielded). */
export interface GeneratedToken {
  token: number;
  /** Present when the request asked for log-probabilities. */
  logprobs?: TokenLogprobs;
}

/** A per-request decoding constraint: the sampler's view plus the state the generator moves on. */
export interface DecodingConstraint extends SamplingConstraint {
  /** Moves past a sampled (allowed) token; EOS ids are a no-op. */
  advance(id: number): void;
  /** Nothing but EOS may follow: the generator ends (stopReason eos) without another step. */
  readonly done: boolean;
}

export interface PrefillProgress {
  promptTokens: number;
  cachedTokens: number;
  /** Prompt tokens computed so far (excluding cached ones). */
  processed: number;
}

export interface GenerationSummary {
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
  /** `consumer` = the caller stopped the generator with .return() (e.g. a stop string). */
  stopReason: 'eos' | 'max_tokens' | 'cancelled' | 'consumer';
  ttftMs: number;
  prefillMs: number;
  decodeMs: number;
  /** Part of decodeMs spent choosing tokens (sampler + constraint). */
  sampleMs: number;
  /** Whether the KV state was stored in the prefix cache. */
  cached: boolean;
  /** Lookup decoding: draft tokens verified, and how many of them were accepted (absent when off). */
  draftTokens?: number;
  acceptedDrafts?: number;
}

export interface GenerateHooks {
  signal?: AbortSignal;
  onPrefill?: (p: PrefillProgress) => void;
  /** Always called once at the end (also after .return() or an error, where it is the only report). */
  onDone?: (s: GenerationSummary) => void;
  /**
   * Continuous batching (batch.ts): this generation's forward steps run in the scheduler's shared
   * steps together with the other open generations. Absent = it runs its steps alone.
   */
  batch?: BatchScheduler | null;
}

/**
 * Prompt tokens per prefill step. Measured on this CPU (best of 3, 105M and 0.6B shapes, prompts of
 * 512–4,096 tokens): 256 is as fast as 128 and up to 2x faster than 512 on long prompts (e.g. 0.6B,
 * 1,024 tokens: 94 vs 49 tok/s; 105M, 4,096 tokens: 392 vs 200 tok/s) — bigger steps spill the
 * per-step activations and attention scores out of cache. Also the cancellation granularity.
 */
export const DEFAULT_PREFILL_CHUNK = 256;

/**
 * Generates tokens for `req`. Yields each sampled token (EOS ids are not yielded) and returns a
 * summary.
 *
 * Cancellation: `signal` is checked before every prefill chunk and every decode step (and the
 * generator yields an event-loop turn after each, so an abort can arrive); a cancelled run returns
 * with stopReason `cancelled`.
 *
 * Prefix caching (when `prefixCache` is given and cachePrompt is not false): after the run, the KV
 * state of prompt + the generated tokens fed back through the model is stored — but only if the
 * prompt prefill completed, the signal was not aborted and nothing threw. A consumer `.return()`
 * (stop string) is a normal end and is cached; a cancelled or failed run never is.
 */
export async function* generateTokens(
  lm: LoadedModel,
  prefixCache: PrefixCache | null,
  req: TokenRequest,
  hooks: GenerateHooks = {},
): AsyncGenerator<GeneratedToken, GenerationSummary, undefined> {
  const t0 = performance.now();
  const { config, model, info } = lm;
  const prompt = req.promptIds;
  if (!Array.isArray(prompt) || prompt.length === 0) throw new ModelError('invalid_request', 'prompt is empty');
  for (const t of prompt) {
    if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) throw new ModelError('invalid_request', 'prompt has an invalid token id');
  }
  if (prompt.length >= info.contextLength) {
    throw new ModelError(
      'context_length_exceeded',
      `prompt has ${prompt.length} tokens; the model's context is ${info.contextLength}`,
    );
  }
  const maxTokens = Math.max(0, Math.min(Math.floor(req.sampling.maxTokens), info.contextLength - prompt.length));
  const chunkSize = Math.max(1, req.prefillChunk ?? DEFAULT_PREFILL_CHUNK);
  const eos = new Set([...info.eosTokenIds, ...(req.eosTokenIds ?? [])]);
  const signal = hooks.signal;

  // Sliding-window layers keep a ring of window-1 + `slack` slots: room for the longest step this
  // run takes (a prefill chunk or a lookup verify pass), so lookup's rollback stays exact.
  const kvOpts = { slack: Math.max(chunkSize, MAX_DRAFT + 1), pool: lm.kvPool ?? null };
  const lookup = prefixCache ? prefixCache.lookup(prompt, config.layerWindows, kvOpts) : null;
  const cache: KVCache = lookup ? lookup.cache : kvCacheFor(config, kvOpts);
  const cachedTokens = lookup ? lookup.reusedTokens : 0;
  const fed: number[] = prompt.slice(0, cachedTokens); // tokens whose KV is in `cache`

  const summary: GenerationSummary = {
    promptTokens: prompt.length,
    cachedTokens,
    completionTokens: 0,
    stopReason: 'consumer',
    ttftMs: 0,
    prefillMs: 0,
    decodeMs: 0,
    sampleMs: 0,
    cached: false,
  };
  let prefillDone = false;
  let failed = false;
  let lookupStats: { policy: DraftPolicy; history: number[] } | null = null;
  let tDecode = 0;
  const runner = hooks.batch ? hooks.batch.runner() : directRunner(model);

  try {
    let pos = cachedTokens;
    let logits: mx.array | null = null;
    // One KV allocation for the whole prompt plus the first decode steps (instead of a copy into
    // fresh memory per chunk).
    cache.expect(prompt.length + Math.min(maxTokens, KV_STEP));
    while (pos < prompt.length) {
      if (signal?.aborted) {
        summary.stopReason = 'cancelled';
        return summary;
      }
      // The runner may run fewer tokens than asked (a batched step while others decode).
      const step = await runner.prefill(cache, prompt.slice(pos, pos + chunkSize), chunkSize);
      logits = step.logits;
      fed.push(...prompt.slice(pos, pos + step.used));
      pos += step.used;
      hooks.onPrefill?.({ promptTokens: prompt.length, cachedTokens, processed: pos - cachedTokens });
      await runner.afterPrefill(step.used, pos >= prompt.length);
    }
    prefillDone = true;
    summary.prefillMs = performance.now() - t0;
    if (signal?.aborted) {
      summary.stopReason = 'cancelled';
      return summary;
    }
    if (maxTokens === 0) {
      summary.stopReason = 'max_tokens';
      return summary;
    }
    tDecode = performance.now();
    const sampler = new Sampler(req.sampling, prompt, { logprobs: req.logprobs });
    const constraint = req.constraint ?? null;
    let tokenLogprobs: TokenLogprobs | null = null;
    const pick = (l: mx.array): number => {
      const ts = performance.now();
      const id = sampler.sample(l, constraint);
      tokenLogprobs = sampler.lastLogprobs;
      if (constraint && id >= 0 && !eos.has(id)) constraint.advance(id);
      summary.sampleMs += performance.now() - ts;
      return id;
    };
    // Sampled tokens not yet yielded, in order; the first `ahead` of them are verified drafts whose
    // KV is already in the cache (lookup decoding), the others are not fed yet.
    const pending: number[] = [pick(logits!)];
    const pendingLogprobs: (TokenLogprobs | null)[] = [tokenLogprobs as TokenLogprobs | null];
    let ahead = 0;
    summary.ttftMs = performance.now() - t0;
    const lookup = req.lookup ? { policy: new DraftPolicy(), history: prompt.slice(), cache: req.lookup.cache } : null;
    lookupStats = lookup;
    const index = lookup ? new NgramIndex(lookup.history) : null;
    for (;;) {
      const token = pending.shift()!;
      const lp: TokenLogprobs | null = pendingLogprobs.shift() ?? null;
      const inCache = ahead > 0;
      if (inCache) ahead--;
      // A negative id: the constraint allowed nothing (cannot happen with a well-formed one).
      if (eos.has(token) || token < 0) {
        summary.stopReason = 'eos';
        break;
      }
      summary.completionTokens++;
      yield lp ? { token, logprobs: lp } : { token };
      lookup?.history.push(token);
      if (signal?.aborted) {
        summary.stopReason = 'cancelled';
        break;
      }
      if (constraint?.done && pending.length === 0) {
        // The constrained document is complete: EOS is the only possible next token, so end
        // here instead of computing one more step to sample it. (With lookup decoding the
        // constraint has already consumed every verified token still pending: yield those first.)
        summary.stopReason = 'eos';
        break;
      }
      if (summary.completionTokens >= maxTokens) {
        summary.stopReason = 'max_tokens';
        break;
      }
      if (inCache) {
        // A verified draft: its KV was computed by the verification pass.
        fed.push(token);
        continue;
      }
      let drafts: number[] = [];
      if (lookup && index) {
        const k = Math.min(lookup.policy.want(), maxTokens - summary.completionTokens, info.contextLength - prompt.length - summary.completionTokens - 1);
        if (k > 0) {
          drafts = index.draft(k);
          if (drafts.length === 0 && lookup.cache) drafts = lookup.cache.draft(lookup.history, k);
        }
      }
      if (drafts.length === 0) {
        const next = await runner.step(cache, [token], true);
        fed.push(token);
        pending.push(pick(next));
        pendingLogprobs.push(tokenLogprobs as TokenLogprobs | null);
      } else {
        // Verify every draft in one pass: row i holds the logits after token, d1..di. The sampler
        // runs on the rows in order, exactly as plain decoding would on the same prefixes; a draft
        // is kept while the sampled token equals it. The first disagreeing sample (or the sample
        // after the last draft) is the next token to feed. Greedy output is therefore identical to
        // plain decoding, and with temperature every emitted token is still drawn from the model's
        // distribution given the tokens before it (the draft only picks which prefix is verified;
        // this is the speculative-sampling rule for a deterministic draft: accept with p(d), else
        // draw from p without d).
        const rows = await runner.step(cache, [token, ...drafts], false);
        fed.push(token);
        let accepted = 0;
        for (let i = 0; i <= drafts.length; i++) {
          const x = pick(rows.index(i));
          pending.push(x);
          pendingLogprobs.push(tokenLogprobs as TokenLogprobs | null);
          const done = eos.has(x) || x < 0 || constraint?.done || summary.completionTokens + pending.length >= maxTokens;
          if (i < drafts.length && x === drafts[i]) accepted++;
          if (i >= drafts.length || x !== drafts[i] || done) break;
        }
        // The KV of rejected drafts is dropped; accepted ones stay (fed as they are yielded).
        cache.trim(drafts.length - accepted);
        ahead = accepted;
        lookup!.policy.record(drafts.length, accepted);
      }
      await runner.afterStep();
      if (signal?.aborted) {
        summary.stopReason = 'cancelled';
        break;
      }
    }
    return summary;
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    runner.close();
    if (tDecode) summary.decodeMs = performance.now() - tDecode;
    // Verified drafts that were never yielded (or a yielded one the run ended on) are not part of
    // the fed sequence: drop their KV so cache and `fed` agree.
    if (cache.offset > fed.length) cache.trim(cache.offset - fed.length);
    if (lookupStats) {
      summary.draftTokens = lookupStats.policy.proposed;
      summary.acceptedDrafts = lookupStats.policy.accepted;
      if (req.lookup?.cache && !failed && summary.completionTokens > 0) {
        req.lookup.cache.add(lookupStats.history.slice(Math.max(0, prompt.length - 4)));
      }
    }
    if (summary.stopReason === 'consumer' && signal?.aborted) summary.stopReason = 'cancelled';
    if (prefixCache && req.cachePrompt !== false && prefillDone && !failed && !signal?.aborted && fed.length > 0) {
      summary.cached = prefixCache.store(fed, cache);
    }
    // Its buffers go to the pool (unless a prefix-cache entry now holds them).
    cache.release();
    hooks.onDone?.(summary);
  }
}

/** Convenience: runs a generation to completion and returns the tokens and summary. */
export async function generateAll(
  lm: LoadedModel,
  prefixCache: PrefixCache | null,
  req: TokenRequest,
  hooks: GenerateHooks = {},
): Promise<{ tokens: number[]; summary: GenerationSummary }> {
  const tokens: number[] = [];
  const it = generateTokens(lm, prefixCache, req, hooks);
  for (;;) {
    const r = await it.next();
    if (r.done) return { tokens, summary: r.value };
    tokens.push(r.value.token);
  }
}
