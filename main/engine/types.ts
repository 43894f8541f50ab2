// Public types of the engine: what the server (parent process) and the engine process exchange.
// Kept free of MLX imports so the server can use them without loading the native binding.
import type { KvSliding } from './model/kv-size.ts';

/** Sampling and stopping controls for one generation. Neutral values switch a control off. */
export interface SamplingParams {
  /** 0 = greedy (argmax). */
  temperature: number;
  /** 1 = off. */
  topP: number;
  /** 0 = off. */
  topK: number;
  /** 0 = off. */
  minP: number;
  /** 1 = off. Divides positive / multiplies negative logits of tokens already seen (prompt + output). */
  repetitionPenalty: number;
  /** 0 = off. OpenAI semantics: subtract once for every token already generated. */
  presencePenalty: number;
  /** 0 = off. OpenAI semantics: subtract count × penalty for tokens already generated. */
  frequencyPenalty: number;
  /** Same seed + same params + same prompt → same tokens. Undefined = nondeterministic. */
  seed?: number;
  /** Hard cap on generated tokens (the server clamps it to the remaining context). */
  maxTokens: number;
  /** Stop strings: generation ends before any of them is emitted, even when it spans tokens. */
  stop: string[];
}

export const DEFAULT_SAMPLING: SamplingParams = {
  temperature: 0,
  topP: 1,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  maxTokens: 256,
  stop: [],
};

export interface GenerateRequest {
  /** Caller-chosen id, echoed on every event; used to cancel. */
  requestId: string;
  /** The fully rendered prompt as token ids (the chat template is applied by the caller). */
  promptIds: number[];
  sampling: SamplingParams;
  /** Whether this prompt's KV state may be kept in the prefix cache (default true). */
  cachePrompt?: boolean;
  /**
   * Constrained decoding (main/engine/constrain): the output must be `prefix` + a JSON value
   * valid for `schema` + `suffix`, and generation stops once it is complete. Absent = free text.
   */
  constraint?: GenerationConstraint;
  /**
   * OpenAI logprobs: when set, every generated token is reported (on `delta` events) with its
   * log-probability and this many most likely alternatives (0..20). The distribution is the raw
   * model's, log_softmax(logits), before penalties, temperature, filters and any constraint
   * (vLLM's default). Absent = off.
   */
  logprobs?: number;
}

/** A token and its raw-model log-probability. */
export interface TokenLogprobAlternative {
  id: number;
  /** Text of the token on its own (special tokens spelled out; a partial UTF-8 character is U+FFFD). */
  token: string;
  /** <= 0; -9999 stands for a probability that underflowed. */
  logprob: number;
  /** The token's exact UTF-8 bytes (may be part of a character). */
  bytes: number[];
}

/** One generated token with its log-probability and the most likely alternatives at its step. */
export interface TokenLogprob extends TokenLogprobAlternative {
  /**
   * For the generated token, `token` is the text it added to the output as the detokenizer rendered
   * it: concatenating these gives the output text. A token that only carries the first bytes of a
   * character has '' (the character goes to the token that completes it); `bytes` stay exact.
   */
  top: TokenLogprobAlternative[];
}

/** What constrained output must look like (response_format json_object/json_schema, forced tool calls). */
export interface GenerationConstraint {
  /** JSON Schema (the subset main/engine/constrain/schema.ts accepts); null = any JSON object. */
  schema: Record<string, unknown> | null;
  /** Literal text before the JSON value (e.g. the template's `<tool_call>\n`). */
  prefix?: string;
  /** Literal text after it (e.g. `\n</tool_call>`). */
  suffix?: string;
  /**
   * Lazy mode (tool_choice "auto"): output is free until it contains `trigger` (which `prefix`
   * starts with, e.g. `<tool_call>`); the rest of prefix + JSON + suffix is then enforced, after
   * which output is free again. Generation is not stopped by a completed call.
   */
  trigger?: string;
}

/** Why a generation ended. `cancelled` generations must never be cached by anyone. */
export type FinishReason = 'stop' | 'length' | 'cancelled';

export type EngineEvent =
  /** Prefill progress; emitted per prefill chunk so callers can send keep-alives. */
  | { type: 'prefill'; requestId: string; promptTokens: number; cachedTokens: number; processed: number }
  /**
   * Text delta: never splits a UTF-8 character and never contains (part of) a matched stop string.
   * With `logprobs` requested, `logprobs` lists the tokens whose text this delta completes (the
   * text may be '' when only such tokens are left at the end). Tokens held back by stop-string
   * matching are listed once their text is released; a token that straddles a cut stop string is
   * listed (it produced part of the returned text), tokens wholly inside it are not.
   */
  | { type: 'delta'; requestId: string; text: string; tokens: number; logprobs?: TokenLogprob[] }
  | {
      type: 'done';
      requestId: string;
      finishReason: FinishReason;
      /** eos: model emitted an end token; stop_string: a stop string matched; max_tokens; cancelled. */
      stopReason: 'eos' | 'stop_string' | 'max_tokens' | 'cancelled';
      promptTokens: number;
      /** Prompt tokens whose KV came from the prefix cache (not recomputed). */
      cachedTokens: number;
      completionTokens: number;
      /** Milliseconds from request receipt in the engine to the first generated token. */
      ttftMs: number;
      prefillMs: number;
      decodeMs: number;
      /** Milliseconds of decodeMs spent choosing tokens (sampling, plus constrained decoding's checks and masks). */
      sampleMs?: number;
      /** With stopReason 'stop_string': which of the request's stop strings matched. */
      stopString?: string;
      /** Lookup decoding: draft tokens verified and how many were accepted (absent when it was off). */
      draftTokens?: number;
      acceptedDrafts?: number;
    }
  | { type: 'error'; requestId: string; code: EngineErrorCode; message: string };

/** How an embedding model turns per-token hidden states into one vector. */
export type EmbeddingPooling = 'last' | 'mean' | 'first';

/** One embeddings batch: token ids per input (tokenized by the caller), run in order. */
export interface EmbedRequest {
  /** Caller-chosen id (same rules as GenerateRequest.requestId); used to cancel. */
  requestId: string;
  inputs: number[][];
}

export interface EmbedResult {
  /** One L2-normalized float32 vector [hiddenSize] per input, in input order. */
  embeddings: Float32Array[];
  /** Sum of the inputs' token counts. */
  promptTokens: number;
  /** The pooling the engine applied (declared by the model folder; last-token by default). */
  pooling: EmbeddingPooling;
}

export type EngineErrorCode =
  | 'engine_crashed' // the engine process died mid-request
  | 'engine_unavailable' // not started / restarting / given up
  | 'model_load_failed'
  | 'context_length_exceeded'
  | 'invalid_request'
  | 'internal_error';

/** Facts about the loaded model that the server, metrics and caches need. No file paths. */
export interface ModelInfo {
  /** Display id, e.g. the folder name `Qwen3-0.6B-4bit`. */
  id: string;
  architecture: string; // config.model_type: llama | mistral | qwen2 | qwen3
  numParameters: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  hiddenSize: number;
  vocabSize: number;
  /** Maximum context (prompt + completion) in tokens. */
  contextLength: number;
  /** What the checkpoint stores: float32 | float16 | bfloat16 | q4 | q8 … */
  checkpointDtype: string;
  quantization: { bits: number; groupSize: number } | null;
  /** dtype used for compute in memory (float32 on the CPU build). */
  computeDtype: string;
  /** The dtype policy that loaded it: cpu-f32 | native-f32-packed | native-bfloat16-packed … (see main/engine/probe). */
  dtypePolicy?: string;
  /** Bytes of weights held in memory after load. */
  weightBytes: number;
  /** Bytes of KV cache per token in the compute dtype (2 × layers × kvHeads × headDim × bytes). */
  kvBytesPerToken: number;
  /**
   * Sliding-window layers' part of kvBytesPerToken and the tokens their ring buffers hold at most:
   * past that length their KV stops growing (model/kv-size.ts `kvBytesFor`). Absent/null: none.
   */
  kvSliding?: KvSliding | null;
  /** Stable hash of config + weights metadata; part of every cache key. */
  fingerprint: string;
  eosTokenIds: number[];
}

export interface PrefixCacheStats {
  entries: number;
  bytes: number;
  budgetBytes: number;
  reusedTokens: number;
  computedTokens: number;
  hits: number;
  misses: number;
}

export interface EngineStats {
  rssBytes: number;
  heapUsedBytes: number;
  /** MLX counters where the build has them (0 on the CPU build of 0.0.7). */
  /** MLX's own pool counters (Metal builds); null where the build has no working counter (the CPU build reads 0 whatever is allocated). */
  mlxActiveBytes: number | null;
  mlxPeakBytes: number | null;
  mlxCacheBytes?: number | null;
  prefixCache: PrefixCacheStats;
  /**
   * KV buffers kept for the next sequences (main/engine/model/kv-pool.ts; absent where MLX's own
   * buffer cache does this job, on Metal). Part of the engine's RSS.
   */
  kvPool?: { buffers: number; bytes: number; budgetBytes: number; hits: number; misses: number };
  /** Which BLAS library the engine process actually loaded, e.g. 'openblas' | 'reference' | 'unknown'. */
  blas: string;
  /** Whether the one-row product shim (main/engine/process/gemv-shim.c) is loaded in the engine process. */
  gemvShim?: boolean;
  /**
   * Continuous batching since load (absent when generations run one at a time): forward steps,
   * steps shared by several sequences, the most sequences in one step, sequence-steps run.
   */
  batch?: { steps: number; batchedSteps: number; maxSequences: number; sequenceSteps: number };
}

/**
 * One prefix KV entry as plain data (shape-compatible with main/caches' PrefixKvEntry): the token
 * ids and, per layer, float32 keys/values of shape [1, kvHeads, tokens, headDim].
 */
export interface PrefixKvSnapshot {
  tokens: number[];
  layers: { keys: Float32Array; values: Float32Array; shape: number[]; dtype: 'float32' }[];
}

export type EngineState = 'stopped' | 'loading' | 'ready' | 'restarting' | 'failed';

export interface EngineCrashInfo {
  exitCode: number | null;
  signal: string | null;
  /** Crashes since the last successful start. */
  consecutiveCrashes: number;
  /** Whether the supervisor will try again (false once it gave up). */
  willRestart: boolean;
}

/**
 * The supervised engine process as the server sees it. Implemented in main/engine/process/.
 * Every method is safe to call in any state; failures surface as EngineEvent errors or rejected
 * promises carrying an EngineErrorCode, never as a crash of the caller.
 */
export interface EngineClient {
  readonly state: EngineState;
  readonly model: ModelInfo | null;
  /** Starts (or restarts) the engine process on a model folder; resolves once it can generate. */
  start(modelDir: string): Promise<ModelInfo>;
  /**
   * Streams one generation. Aborting `signal` cancels within one prefill chunk or decode step and
   * ends the stream with a `done` event whose finishReason is `cancelled`.
   */
  generate(req: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent>;
  stats(): Promise<EngineStats>;
  /**
   * Embeddings (optional; implemented by the supervised client): runs in the engine's request
   * queue, after and before generations, without touching the prefix cache. Rejects with an Error
   * carrying an EngineErrorCode in `.code`; aborting `signal` rejects with an Error named
   * 'AbortError' (the engine stops between inputs/chunks).
   */
  embed?(req: EmbedRequest, signal?: AbortSignal): Promise<EmbedResult>;
  /** Stops the engine process (in-flight work is cancelled). */
  stop(): Promise<void>;
  /**
   * Prefix-cache persistence (optional; implemented by the supervised client). Copies of the
   * engine's in-memory prefix KV entries with at least `minTokens` tokens; `onlyNew` (default
   * true) skips entries this engine process already exported.
   */
  exportPrefixEntries?(opts?: { minTokens?: number; onlyNew?: boolean }): Promise<PrefixKvSnapshot[]>;
  /** Adds a persisted entry to the engine's prefix cache; false when it does not fit the model or budget. */
  importPrefixEntry?(entry: PrefixKvSnapshot): Promise<boolean>;
  /** Generations decoded together from now on (optional; the supervised client): live settings. */
  setMaxBatch?(n: number): void;
  on(event: 'state', listener: (state: EngineState, reason?: string) => void): this;
  on(event: 'crash', listener: (info: EngineCrashInfo) => void): this;
  off(event: string, listener: (...args: any[]) => void): this;
}
