// What the engine process runs for one request: engine-core's token generator (prefix cache →
// chunked prefill → decode steps) composed with engine-text's incremental detokenizer and stop
// string matcher into EngineEvents. Lives in the engine process only (imports MLX).
import { core as mx } from '@frost-beta/mlx';
import { performance } from 'node:perf_hooks';
import type { MlxCapabilities } from '../probe/capabilities.ts';
import { choosePolicy, type DtypePolicySetting, type PolicyChoice } from '../probe/policy-choice.ts';
import { mlxBinaryKey } from '../probe/probe.ts';
import {
  afterLargeStep,
  DEFAULT_PREFILL_CHUNK,
  generateAll,
  exportEntry,
  getGc,
  generateTokens,
  importEntry,
  loadModel,
  PrefixCache,
  NgramCache,
  type GenerationSummary,
  type KVPoolStats,
  type LoadedModel,
  DEFAULT_KV_POOL_BYTES,
} from '../model/index.ts';
import { loadTextPipeline, TOOL_MARKER_TOKENS, type TextPipeline } from '../text/index.ts';
import { buildTokenTable, compileConstraint, createTokenConstraint, type TokenTable } from '../constrain/index.ts';
import type { DecodingConstraint } from '../model/generator.ts';
import { DEFAULT_SAMPLING } from '../types.ts';
import type { EmbedRequest, EmbedResult, EngineEvent, GenerateRequest, ModelInfo, PrefixCacheStats, PrefixKvSnapshot, TokenLogprob } from '../types.ts';
import { embedTokens, readEmbeddingConfig, type EmbeddingConfig } from '../model/embed.ts';
import { BatchScheduler, type BatchStats } from '../model/batch.ts';
import { LogprobTracker, TokenTexts } from './logprobs.ts';
import type { LoadOptions } from './protocol.ts';

export interface RunContext {
  signal: AbortSignal;
  /** performance.now() when the engine process received the request (TTFT counts queueing). */
  receivedAt: number;
  emit(e: EngineEvent): void;
}

/** The cross-request n-gram cache of lookup decoding: one per loaded model (recent outputs). */
const ngramCaches = new WeakMap<LoadedModel, NgramCache>();
function ngramCacheFor(lm: LoadedModel): NgramCache {
  let c = ngramCaches.get(lm);
  if (!c) ngramCaches.set(lm, (c = new NgramCache()));
  return c;
}

/** The engine tuning sent with `load` (protocol.ts LoadOptions), with the prefix budget and chunk size resolved. */
export type BackendOptions = Omit<LoadOptions, 'prefixCacheBytes' | 'prefillChunk'> & Required<Pick<LoadOptions, 'prefixCacheBytes' | 'prefillChunk'>>;

/**
 * The dtype choice inside the engine process. The parent's probe record counts only if it was
 * made for the very binary this process loaded (same sha256 + version key); otherwise nothing is
 * known and half precision stays unreachable.
 */
export function engineDtypeChoice(opts: Pick<BackendOptions, 'dtypePolicy' | 'capabilities'>): { choice: PolicyChoice; capabilities: MlxCapabilities | null } {
  let caps: MlxCapabilities | null = null;
  if (opts.capabilities) {
    try {
      caps = opts.capabilities.binaryKey === mlxBinaryKey() ? opts.capabilities : null;
    } catch {
      caps = null;
    }
  }
  return { choice: choosePolicy(opts.dtypePolicy ?? 'auto', caps), capabilities: caps };
}

export const DEFAULT_BACKEND_OPTIONS: BackendOptions = {
  prefixCacheBytes: 1024 * 2 ** 20,
  prefillChunk: DEFAULT_PREFILL_CHUNK,
};

export interface Backend {
  readonly info: ModelInfo;
  run(req: GenerateRequest, ctx: RunContext): Promise<void>;
  /** Memory policy between requests (full GC + a turn so MLX finalizers run). */
  afterRequest(): Promise<void>;
  prefixCacheStats(): PrefixCacheStats;
  /** The KV buffer pool (null when the model has none). */
  kvPoolStats(): KVPoolStats | null;
  /** Drops every kept prefix entry and the KV pool's buffers; returns the bytes they held. */
  clearPrefixCache(): number;
  /** Copies of prefix-cache entries (float32 KV) for persistence. */
  exportPrefixEntries(minTokens: number, onlyNew: boolean): PrefixKvSnapshot[];
  /** Adds a persisted entry; throws when it does not match the model, false when over budget. */
  importPrefixEntry(entry: PrefixKvSnapshot): boolean;
  /** MLX's own pool counters (Metal); null where the build has none (the CPU build). */
  mlxActiveBytes(): number | null;
  mlxPeakBytes(): number | null;
  mlxCacheBytes(): number | null;
  /** Memory policy after an embeddings job: a full GC only when an input ran in several chunks. */
  afterEmbed(): Promise<void>;
  /** Pooling declared by the model folder (read at load). */
  readonly embedding: EmbeddingConfig;
  /**
   * Embeddings of every input, in order (fresh KV per input: the prefix cache is not touched).
   * Throws ModelError (invalid ids, too long) or EmbedCancelledError when `signal` aborts.
   */
  embed(req: EmbedRequest, signal: AbortSignal): Promise<EmbedResult>;
  /** Continuous-batching counters (null while generations have only run one at a time). */
  batchStats(): BatchStats | null;
  /** Generations that may run at once from now on (settings changed live); above 1 their steps are batched. */
  setMaxBatch(n: number): void;
}

/** Sets MLX's memory and cache pool limits where the probe found the setters working (Metal). */
function applyMlxLimits(caps: MlxCapabilities | null, opts: Pick<BackendOptions, 'mlxMemoryLimitBytes' | 'mlxCacheLimitBytes'>): void {
  if (!caps?.memoryLimits.works) return;
  // relaxed: above the limit MLX waits for memory to be freed rather than failing the allocation.
  if (opts.mlxMemoryLimitBytes) (mx.metal.setMemoryLimit as unknown as (n: number, relaxed: boolean) => number)(opts.mlxMemoryLimitBytes, true);
  if (opts.mlxCacheLimitBytes !== undefined && opts.mlxCacheLimitBytes > 0) mx.metal.setCacheLimit(opts.mlxCacheLimitBytes);
}

const EMPTY_PREFIX_STATS: PrefixCacheStats = { entries: 0, bytes: 0, budgetBytes: 0, reusedTokens: 0, computedTokens: 0, hits: 0, misses: 0 };

export async function loadBackend(modelDir: string, options: Partial<BackendOptions> = {}): Promise<Backend> {
  const opts = { ...DEFAULT_BACKEND_OPTIONS, ...options };
  // The tokenizer is read first: it is cheap and a broken folder fails before gigabytes load.
  const text = await loadTextPipeline(modelDir);
  const { choice, capabilities } = engineDtypeChoice(opts);
  applyMlxLimits(capabilities, opts);
  // The KV buffer pool stands in for the buffer cache MLX keeps on Metal (and not on this CPU
  // build): where MLX's own cache works, freed buffers already come back without page faults.
  const kvPoolBytes = capabilities?.memoryLimits.works ? 0 : Math.min(DEFAULT_KV_POOL_BYTES, opts.kvPoolBytes ?? Infinity);
  const lm = await loadModel(modelDir, { choice, kvPoolBytes });
  const counters = capabilities?.memoryCounters.works === true;
  const eos = [...new Set([...lm.info.eosTokenIds, ...text.eosTokenIds])].sort((a, b) => a - b);
  const info: ModelInfo = { ...lm.info, eosTokenIds: eos };
  const prefixCache = opts.prefixCacheBytes > 0 ? new PrefixCache({ budgetBytes: opts.prefixCacheBytes }) : null;
  // Warm-up: a fresh process's first forward pass pays for BLAS thread start-up, first-use kernel
  // paths and page faults (measured ~400 ms on the ~105M bench model, in the TTFT of the first
  // request after every start, restart and switch). Pay it here, during the load, on a throwaway
  // 8-token prompt + 1 decode step, outside the prefix cache.
  await generateAll(lm, null, {
    promptIds: Array.from({ length: 8 }, (_, i) => i % lm.config.vocabSize),
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 2 },
    eosTokenIds: [],
    cachePrompt: false,
  });
  await afterLargeStep();
  // Entries this process already handed out (or got from the parent): not exported again.
  const exported = new Set<string>();
  // The vocabulary as bytes for constrained decoding: built on the first constrained request
  // (~0.6-0.9 s for Qwen3's 151k tokens), then shared by every later one.
  let tokenTable: TokenTable | null = null;
  const constraintFor = (req: GenerateRequest): DecodingConstraint => {
    let compiled;
    try {
      compiled = compileConstraint(req.constraint!);
    } catch (err) {
      throw Object.assign(new Error(`response format cannot be enforced: ${(err as Error).message}`), { code: 'invalid_request' });
    }
    tokenTable ??= buildTokenTable(text.tokenizer, lm.config.vocabSize, new Set(TOOL_MARKER_TOKENS));
    return createTokenConstraint(tokenTable, compiled, new Set(eos));
  };
  // Token texts/bytes for logprobs: the same byte table (built on the first logprobs request if no
  // constrained one built it), memoized per id.
  let tokenTexts: TokenTexts | null = null;
  const textsFor = (): TokenTexts => {
    if (tokenTexts) return tokenTexts;
    tokenTable ??= buildTokenTable(text.tokenizer, lm.config.vocabSize, new Set(TOOL_MARKER_TOKENS));
    const table = tokenTable;
    tokenTexts = new TokenTexts(
      (id) => table.bytes[id],
      (id) => text.decode([id], { skipSpecialTokens: false }),
    );
    return tokenTexts;
  };
  const embedding = readEmbeddingConfig(modelDir);
  // Set when an embeddings job had a multi-chunk input: its KV buffers lived across full GCs
  // (old-generation wrappers), which only a full GC frees.
  let embedNeedsFullGc = false;
  // Continuous batching: one scheduler for the loaded model, shared by every running generation.
  // Made when batching is first on; a generation that starts while maxBatch is 1 runs alone
  // (the engine process starts it only when nothing else runs), on the unbatched path.
  let maxBatch = Math.max(1, opts.maxBatch ?? 1);
  let batch: BatchScheduler | null = null;
  const batchFor = (): BatchScheduler | null => (maxBatch > 1 ? (batch ??= new BatchScheduler(lm.model, { prefillChunk: opts.prefillChunk })) : null);
  batchFor();
  return {
    batchStats: () => (batch ? { ...batch.stats } : null),
    setMaxBatch(n) {
      maxBatch = Math.max(1, Math.floor(n));
      batchFor();
    },
    info,
    embedding,
    async embed(req, signal) {
      const embeddings: Float32Array[] = [];
      let promptTokens = 0;
      for (const ids of req.inputs) {
        if (ids.length > opts.prefillChunk) embedNeedsFullGc = true;
        embeddings.push(await embedTokens(lm, ids, { pooling: embedding.pooling, chunk: opts.prefillChunk, signal }));
        promptTokens += ids.length;
      }
      return { embeddings, promptTokens, pooling: embedding.pooling };
    },
    async afterEmbed() {
      if (!embedNeedsFullGc) return;
      embedNeedsFullGc = false;
      await afterLargeStep();
    },
    exportPrefixEntries(minTokens, onlyNew) {
      if (!prefixCache) return [];
      const out: PrefixKvSnapshot[] = [];
      for (const e of prefixCache.entries()) {
        if (e.tokens.length < minTokens || (onlyNew && exported.has(e.id))) continue;
        out.push(exportEntry(e));
        exported.add(e.id);
      }
      return out;
    },
    importPrefixEntry(entry) {
      if (!prefixCache) return false;
      const { tokens, cache } = importEntry(entry, { numLayers: info.numLayers, numKvHeads: info.numKvHeads, headDim: info.headDim, dtype: lm.model.policy.computeDtype, layerWindows: lm.config.layerWindows });
      const ok = prefixCache.add(tokens, cache);
      if (ok) {
        for (const e of prefixCache.entries()) {
          if (e.tokens.length === tokens.length && e.tokens.every((t, i) => t === tokens[i])) exported.add(e.id);
        }
      }
      return ok;
    },
    clearPrefixCache() {
      const bytes = prefixCache?.stats().bytes ?? 0;
      prefixCache?.clear(); // a running generation keeps its own KV; only the kept entries go
      // The entries just gave their buffers to the KV pool: under memory pressure those go too.
      return bytes + (lm.kvPool?.clear() ?? 0);
    },
    run: (req, ctx) =>
      runModelGeneration(lm, text, prefixCache, eos, opts, req, ctx, req.constraint ? constraintFor(req) : null, req.logprobs !== undefined ? textsFor() : null, batchFor()),
    afterRequest: afterLargeStep,
    prefixCacheStats: () => prefixCache?.stats() ?? { ...EMPTY_PREFIX_STATS },
    kvPoolStats: () => lm.kvPool?.stats() ?? null,
    // The CPU build of 0.0.7 has no allocator counters.
    // null = this build has no working counter (the CPU build reads 0 whatever is allocated).
    mlxActiveBytes: () => (counters ? mx.metal.getActiveMemory() : null),
    mlxPeakBytes: () => (counters ? mx.metal.getPeakMemory() : null),
    mlxCacheBytes: () => (counters ? mx.metal.getCacheMemory() : null),
  };
}

/**
 * Safety net for the memory policy. The generator frees each step's MLX arrays with a minor GC,
 * which only works while their JS wrappers are still young; if they get promoted to the old
 * generation (observed here with a differently transpiled build: RSS grew quadratically, ~1 GB
 * after 1,000 tokens of a tiny model) only a full GC frees them. A full GC costs ~60 ms in this
 * process (the tokenizer lives in the JS heap), far too much per token, so it runs only when RSS has
 * grown by more than `limitBytes` since generation started (or since the last forced GC).
 * Checking RSS costs microseconds per token.
 */
class RssGuard {
  private base = -1;
  forcedGcs = 0;
  constructor(private readonly limitBytes = 128 * 2 ** 20) {}
  check(): void {
    const rss = process.memoryUsage.rss();
    if (this.base < 0) this.base = rss;
    else if (rss - this.base > this.limitBytes) {
      getGc()();
      this.forcedGcs++;
      // MLX memory is released by finalizers on the next event-loop turn (the generator yields
      // one after every step) and glibc may keep some of it, so the new baseline is today's RSS.
      this.base = rss;
    }
  }
}

async function runModelGeneration(
  lm: LoadedModel,
  text: TextPipeline,
  prefixCache: PrefixCache | null,
  eos: number[],
  opts: BackendOptions,
  req: GenerateRequest,
  ctx: RunContext,
  constraint: DecodingConstraint | null = null,
  tokenTexts: TokenTexts | null = null,
  batch: BatchScheduler | null = null,
): Promise<void> {
  const { requestId } = req;
  const startedAt = performance.now();
  const queuedMs = startedAt - ctx.receivedAt;
  const detok = text.createDetokenizer();
  const stops = text.createStopMatcher(req.sampling.stop);
  const result: { summary: GenerationSummary | null } = { summary: null };
  let stoppedByString = false;
  /** The stop string that ended the output (Anthropic reports it as `stop_sequence`). */
  let matchedStop: string | null = null;
  let pendingTokens = 0;
  const tracker = tokenTexts && req.logprobs !== undefined ? new LogprobTracker(tokenTexts) : null;

  const gen = generateTokens(
    lm,
    prefixCache,
    {
      promptIds: req.promptIds,
      sampling: req.sampling,
      cachePrompt: req.cachePrompt !== false,
      eosTokenIds: eos,
      prefillChunk: opts.prefillChunk,
      constraint,
      logprobs: tracker ? req.logprobs : null,
      lookup: opts.lookupDecoding === false ? null : { cache: ngramCacheFor(lm) },
    },
    {
      signal: ctx.signal,
      onPrefill: (p) => ctx.emit({ type: 'prefill', requestId, promptTokens: p.promptTokens, cachedTokens: p.cachedTokens, processed: p.processed }),
      onDone: (s) => (result.summary = s),
      batch,
    },
  );

  /** Emits released text; with logprobs, also the tokens it completes (`end`: how the text ended). */
  const emitText = (t: string, end: 'stop' | 'end' | null = null): void => {
    let lps: TokenLogprob[] = [];
    if (tracker) {
      lps = tracker.emitted(t.length);
      if (end === 'stop') lps.push(...tracker.stopped());
      else if (end === 'end') lps.push(...tracker.end());
    }
    if (t.length === 0 && lps.length === 0) return;
    ctx.emit({ type: 'delta', requestId, text: t, tokens: pendingTokens, ...(lps.length > 0 ? { logprobs: lps } : {}) });
    pendingTokens = 0;
  };

  const rssGuard = new RssGuard();
  try {
    for await (const { token, logprobs } of gen) {
      pendingTokens++;
      rssGuard.check();
      const piece = detok.push(token);
      if (tracker && logprobs) tracker.push(logprobs, piece);
      if (piece.length === 0) continue;
      const r = stops.push(piece);
      emitText(r.emit, r.stopped ? 'stop' : null);
      if (r.stopped) {
        // Leaving the loop calls gen.return(): the generator records a normal end (stopReason
        // 'consumer'), may cache the KV state, and computes nothing more.
        stoppedByString = true;
        matchedStop = r.matched;
        break;
      }
    }
  } finally {
    // If the loop threw, make sure the generator runs its cleanup too.
    if (!result.summary) await gen.return(undefined as never).catch(() => undefined);
  }

  const s = result.summary;
  if (!s) throw new Error('the token generator ended without a summary');
  const cancelled = s.stopReason === 'cancelled' || (ctx.signal.aborted && !stoppedByString);
  if (!cancelled && !stoppedByString) {
    // Generation ended for another reason (EOS, max tokens): release held-back text. A held
    // partial stop-string prefix is real output when no stop string completed.
    const tail = detok.flush();
    if (tail) tracker?.pushTail(tail);
    const r = tail ? stops.push(tail) : { emit: '', stopped: false, matched: null };
    if (r.stopped) {
      emitText(r.emit, 'stop');
      stoppedByString = true;
      matchedStop = r.matched;
    } else {
      emitText(r.emit);
      emitText(stops.flush(), 'end');
    }
  }
  const stopReason: Extract<EngineEvent, { type: 'done' }>['stopReason'] = cancelled ? 'cancelled' : stoppedByString ? 'stop_string' : s.stopReason === 'max_tokens' ? 'max_tokens' : 'eos';
  ctx.emit({
    type: 'done',
    requestId,
    finishReason: stopReason === 'cancelled' ? 'cancelled' : stopReason === 'max_tokens' ? 'length' : 'stop',
    stopReason,
    promptTokens: s.promptTokens,
    cachedTokens: s.cachedTokens,
    completionTokens: s.completionTokens,
    ttftMs: s.completionTokens > 0 || s.ttftMs > 0 ? queuedMs + s.ttftMs : 0,
    prefillMs: s.prefillMs,
    decodeMs: s.decodeMs,
    sampleMs: s.sampleMs,
    ...(s.draftTokens !== undefined ? { draftTokens: s.draftTokens, acceptedDrafts: s.acceptedDrafts ?? 0 } : {}),
    ...(stoppedByString && matchedStop !== null ? { stopString: matchedStop } : {}),
  });
}
