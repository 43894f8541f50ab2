// Messages exchanged between the parent (EngineClient) and the engine process. Messages are plain
// objects plus Float32Arrays (prefix KV snapshots), i.e. structured-clone data: child_process IPC
// runs with `serialization: 'advanced'`, and Electron's utilityProcess parentPort clones the same.
// Both directions are validated defensively: a malformed message is dropped (and logged by the
// receiver), never trusted, so a bug on one side cannot crash the other.
import type {
  EmbedRequest,
  EmbeddingPooling,
  EngineErrorCode,
  EngineEvent,
  EngineStats,
  GenerateRequest,
  GenerationConstraint,
  ModelInfo,
  PrefixKvSnapshot,
  SamplingParams,
  TokenLogprob,
} from '../types.ts';
import { isCapabilities, type MlxCapabilities } from '../probe/capabilities.ts';
import { isDtypePolicySetting, type DtypePolicySetting } from '../probe/policy-choice.ts';

/** Bumped when a message shape changes incompatibly; the engine refuses a different version. */
export const PROTOCOL_VERSION = 1;

// ---------------------------------------------------------------- parent → engine

/** Engine-process tuning sent with `load`. */
export interface LoadOptions {
  /** Byte budget of the prompt prefix cache (0 disables it). */
  prefixCacheBytes?: number;
  /** Prompt tokens per prefill chunk: the cancellation granularity of prefill. */
  prefillChunk?: number;
  /** Lookup decoding (n-gram drafts verified in one pass; output unchanged). Default on. */
  lookupDecoding?: boolean;
  /**
   * Generations decoded together in one forward pass (continuous batching, model/batch.ts); later
   * ones wait in arrival order. 1 = one at a time (the unbatched path). Default 1.
   */
  maxBatch?: number;
  /** The dtypePolicy setting (auto | native | float32; default auto). */
  dtypePolicy?: DtypePolicySetting;
  /**
   * The parent's capability probe of this MLX build (main/engine/probe). The engine uses it only
   * if its binaryKey matches the binding the engine process loaded; else it knows nothing (float32).
   */
  capabilities?: MlxCapabilities;
  /** MLX memory / cache pool limits in bytes (applied where the build supports them; 0 = leave). */
  mlxMemoryLimitBytes?: number;
  mlxCacheLimitBytes?: number;
  /**
   * At most this many bytes of KV buffers kept for the next sequences (model/kv-pool.ts; the pool is
   * at most DEFAULT_KV_POOL_BYTES, and off where MLX's own buffer cache works). 0 = no pool.
   */
  kvPoolBytes?: number;
}

export type ParentMessage =
  | { type: 'load'; protocol: number; modelDir: string; options?: LoadOptions }
  | { type: 'generate'; request: GenerateRequest }
  | { type: 'cancel'; requestId: string }
  | { type: 'stats'; id: number }
  /** Copies of prefix-cache entries (for persistence by the caches layer). */
  | { type: 'prefix_export'; id: number; minTokens: number; onlyNew: boolean }
  | { type: 'prefix_import'; id: number; entry: PrefixKvSnapshot }
  /** Drops every prefix-cache entry (memory pressure); replies with the bytes released. */
  | { type: 'prefix_clear'; id: number }
  /** Embeddings for a batch of token-id inputs; queued with generations; cancel with `cancel`. */
  | { type: 'embed'; id: number; request: EmbedRequest }
  /**
   * Live tuning (settings changed while serving): generations decoded together from now on. Running
   * ones keep running; queued ones start as far as the new limit allows. No reply.
   */
  | { type: 'configure'; maxBatch: number }
  | { type: 'shutdown' };

// ---------------------------------------------------------------- engine → parent

export type EngineMessage =
  /** The engine process is up and listening (sent before any model is loaded). */
  | { type: 'hello'; protocol: number; pid: number }
  | { type: 'ready'; model: ModelInfo; loadMs: number }
  /** Loading the model failed; the message is already sanitized. */
  | { type: 'load_failed'; message: string }
  | { type: 'event'; event: EngineEvent }
  | { type: 'stats'; id: number; stats: EngineStats }
  | { type: 'prefix_export_result'; id: number; entries: PrefixKvSnapshot[]; error?: string }
  | { type: 'prefix_import_result'; id: number; ok: boolean; error?: string }
  | { type: 'prefix_clear_result'; id: number; freedBytes: number }
  /**
   * Answer to `embed`: one float32 vector per input, or an error (message sanitized), or
   * `cancelled` when a `cancel` for its requestId arrived first.
   */
  | {
      type: 'embed_result';
      id: number;
      embeddings: Float32Array[];
      promptTokens: number;
      pooling: EmbeddingPooling;
      error?: { code: EngineErrorCode; message: string };
      cancelled?: boolean;
    }
  /** Unrecoverable error; the engine exits right after sending it. Message is sanitized. */
  | { type: 'fatal'; message: string };

// ---------------------------------------------------------------- validation helpers

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: unknown, max = 10_000): v is string => typeof v === 'string' && v.length <= max;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): v is number =>
  Number.isInteger(v) && (v as number) >= min && (v as number) <= max;

/** Request ids travel in logs and events: keep them short and printable. */
export const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Upper bounds that keep one message from exhausting the engine. */
export const LIMITS = {
  maxPromptTokens: 1_048_576,
  maxTokenId: 10_000_000,
  maxStopStrings: 16,
  maxStopLength: 512,
  maxMaxTokens: 1_048_576,
  /** OpenAI's top_logprobs limit. */
  maxTopLogprobs: 20,
  /** Bytes of one token (the longest Qwen3/Llama tokens are well under 256). */
  maxTokenBytes: 1024,
  /** Characters of one token's text. */
  maxTokenText: 4096,
} as const;

/** Returns the validated sampling params or a reason string. */
export function validateSampling(v: unknown): SamplingParams | string {
  if (!isObj(v)) return 'sampling must be an object';
  const num = (k: string, lo: number, hi: number): string | null => {
    const x = v[k];
    if (!isNum(x) || x < lo || x > hi) return `sampling.${k} must be a number in [${lo}, ${hi}]`;
    return null;
  };
  const problems = [
    num('temperature', 0, 100),
    num('topP', 0, 1),
    num('minP', 0, 1),
    num('repetitionPenalty', 0.01, 100),
    num('presencePenalty', -100, 100),
    num('frequencyPenalty', -100, 100),
  ].filter((p): p is string => p !== null);
  if (problems.length) return problems[0];
  if (!isInt(v.topK, 0, LIMITS.maxTokenId)) return 'sampling.topK must be a non-negative integer';
  if (!isInt(v.maxTokens, 0, LIMITS.maxMaxTokens)) return 'sampling.maxTokens must be a non-negative integer';
  if (v.seed !== undefined && v.seed !== null && !Number.isSafeInteger(v.seed)) return 'sampling.seed must be an integer';
  if (!Array.isArray(v.stop) || v.stop.length > LIMITS.maxStopStrings) return `sampling.stop must be an array of at most ${LIMITS.maxStopStrings} strings`;
  for (const s of v.stop) {
    if (!isStr(s, LIMITS.maxStopLength) || s.length === 0) return `each stop string must be a non-empty string of at most ${LIMITS.maxStopLength} characters`;
  }
  return {
    temperature: v.temperature as number,
    topP: v.topP as number,
    topK: v.topK as number,
    minP: v.minP as number,
    repetitionPenalty: v.repetitionPenalty as number,
    presencePenalty: v.presencePenalty as number,
    frequencyPenalty: v.frequencyPenalty as number,
    seed: v.seed === undefined || v.seed === null ? undefined : (v.seed as number),
    maxTokens: v.maxTokens as number,
    stop: [...(v.stop as string[])],
  };
}

/** The envelope of a decoding constraint (the schema itself is compiled, and refused, by the engine). */
function validateConstraint(v: unknown): GenerationConstraint | null | string {
  if (v === undefined || v === null) return null;
  if (!isObj(v)) return 'constraint must be an object';
  if (v.schema !== null && !isObj(v.schema)) return 'constraint.schema must be an object or null';
  for (const k of ['prefix', 'suffix', 'trigger'] as const) {
    if (v[k] !== undefined && !isStr(v[k], 256)) return `constraint.${k} must be a string of at most 256 characters`;
  }
  return {
    schema: v.schema as Record<string, unknown> | null,
    ...(v.prefix !== undefined ? { prefix: v.prefix as string } : {}),
    ...(v.suffix !== undefined ? { suffix: v.suffix as string } : {}),
    ...(v.trigger !== undefined ? { trigger: v.trigger as string } : {}),
  };
}

/** Returns the validated request or a reason string (never throws). */
export function validateGenerateRequest(v: unknown): GenerateRequest | string {
  if (!isObj(v)) return 'request must be an object';
  if (!isStr(v.requestId, 128) || !REQUEST_ID_RE.test(v.requestId)) return 'requestId must match [A-Za-z0-9._:-]{1,128}';
  if (!Array.isArray(v.promptIds) || v.promptIds.length === 0) return 'promptIds must be a non-empty array';
  if (v.promptIds.length > LIMITS.maxPromptTokens) return 'promptIds is too long';
  for (const id of v.promptIds) if (!isInt(id, 0, LIMITS.maxTokenId)) return 'promptIds must hold non-negative integer token ids';
  const sampling = validateSampling(v.sampling);
  if (typeof sampling === 'string') return sampling;
  if (v.cachePrompt !== undefined && typeof v.cachePrompt !== 'boolean') return 'cachePrompt must be a boolean';
  const constraint = validateConstraint(v.constraint);
  if (typeof constraint === 'string') return constraint;
  if (v.logprobs !== undefined && v.logprobs !== null && !isInt(v.logprobs, 0, LIMITS.maxTopLogprobs)) {
    return `logprobs must be an integer in [0, ${LIMITS.maxTopLogprobs}] (alternatives per token)`;
  }
  return {
    requestId: v.requestId,
    promptIds: v.promptIds as number[],
    sampling,
    cachePrompt: v.cachePrompt === undefined ? true : v.cachePrompt,
    ...(constraint ? { constraint } : {}),
    ...(isInt(v.logprobs, 0, LIMITS.maxTopLogprobs) ? { logprobs: v.logprobs } : {}),
  };
}

function isLogprobAlternative(v: unknown): boolean {
  if (!isObj(v) || !isInt(v.id, 0, LIMITS.maxTokenId) || !isStr(v.token, LIMITS.maxTokenText)) return false;
  if (!isNum(v.logprob) || v.logprob > 0) return false;
  return Array.isArray(v.bytes) && v.bytes.length <= LIMITS.maxTokenBytes && v.bytes.every((b) => isInt(b, 0, 255));
}

/** Checks the per-token log-probabilities a delta may carry. */
export function isTokenLogprobList(v: unknown): v is TokenLogprob[] {
  if (!Array.isArray(v) || v.length > LIMITS.maxMaxTokens) return false;
  for (const t of v) {
    if (!isLogprobAlternative(t)) return false;
    const top = (t as Obj).top;
    if (!Array.isArray(top) || top.length > LIMITS.maxTopLogprobs || !top.every(isLogprobAlternative)) return false;
  }
  return true;
}

/** Upper bounds of one embeddings batch (the server enforces tighter, configurable ones). */
export const EMBED_LIMITS = { maxInputs: 4096, maxTotalTokens: 4_194_304 } as const;

/** Returns the validated embed request or a reason string (never throws). */
export function validateEmbedRequest(v: unknown): EmbedRequest | string {
  if (!isObj(v)) return 'request must be an object';
  if (!isStr(v.requestId, 128) || !REQUEST_ID_RE.test(v.requestId)) return 'requestId must match [A-Za-z0-9._:-]{1,128}';
  if (!Array.isArray(v.inputs) || v.inputs.length === 0) return 'inputs must be a non-empty array';
  if (v.inputs.length > EMBED_LIMITS.maxInputs) return 'too many inputs';
  let total = 0;
  for (const ids of v.inputs) {
    if (!Array.isArray(ids) || ids.length === 0) return 'each input must be a non-empty array of token ids';
    total += ids.length;
    if (total > EMBED_LIMITS.maxTotalTokens) return 'inputs are too long';
    for (const id of ids) if (!isInt(id, 0, LIMITS.maxTokenId)) return 'inputs must hold non-negative integer token ids';
  }
  return { requestId: v.requestId, inputs: v.inputs as number[][] };
}

/** Parses a message received by the engine process; null when it is not a valid ParentMessage. */
export function parseParentMessage(v: unknown): ParentMessage | null {
  if (!isObj(v) || !isStr(v.type, 32)) return null;
  switch (v.type) {
    case 'load': {
      if (!isInt(v.protocol) || !isStr(v.modelDir, 4096) || v.modelDir.length === 0) return null;
      const o = v.options;
      if (o !== undefined && !isObj(o)) return null;
      const options: LoadOptions = {};
      if (o && o.prefixCacheBytes !== undefined) {
        if (!isInt(o.prefixCacheBytes)) return null;
        options.prefixCacheBytes = o.prefixCacheBytes;
      }
      if (o && o.prefillChunk !== undefined) {
        if (!isInt(o.prefillChunk, 1, 65_536)) return null;
        options.prefillChunk = o.prefillChunk;
      }
      if (o && o.lookupDecoding !== undefined) {
        if (typeof o.lookupDecoding !== 'boolean') return null;
        options.lookupDecoding = o.lookupDecoding;
      }
      if (o && o.maxBatch !== undefined) {
        if (!isInt(o.maxBatch, 1, 256)) return null;
        options.maxBatch = o.maxBatch;
      }
      if (o && o.dtypePolicy !== undefined) {
        if (!isDtypePolicySetting(o.dtypePolicy)) return null;
        options.dtypePolicy = o.dtypePolicy;
      }
      // A malformed probe record is dropped (the engine then knows nothing and computes in float32).
      if (o && o.capabilities !== undefined && isCapabilities(o.capabilities)) options.capabilities = o.capabilities;
      for (const k of ['mlxMemoryLimitBytes', 'mlxCacheLimitBytes', 'kvPoolBytes'] as const) {
        if (o && o[k] !== undefined) {
          if (!isInt(o[k])) return null;
          options[k] = o[k] as number;
        }
      }
      return { type: 'load', protocol: v.protocol, modelDir: v.modelDir, options };
    }
    case 'generate': {
      // Shape errors inside the request are reported per request (see engine-main), so only the
      // envelope is checked here.
      return isObj(v.request) ? { type: 'generate', request: v.request as unknown as GenerateRequest } : null;
    }
    case 'cancel':
      return isStr(v.requestId, 128) ? { type: 'cancel', requestId: v.requestId } : null;
    case 'stats':
      return isInt(v.id) ? { type: 'stats', id: v.id } : null;
    case 'prefix_export':
      return isInt(v.id) && isInt(v.minTokens) && typeof v.onlyNew === 'boolean'
        ? { type: 'prefix_export', id: v.id, minTokens: v.minTokens, onlyNew: v.onlyNew }
        : null;
    case 'prefix_import': {
      if (!isInt(v.id)) return null;
      const entry = parsePrefixSnapshot(v.entry);
      return entry ? { type: 'prefix_import', id: v.id, entry } : null;
    }
    case 'prefix_clear':
      return isInt(v.id) ? { type: 'prefix_clear', id: v.id } : null;
    case 'embed':
      // As for `generate`, the request's shape is checked (and answered) per request by the engine.
      return isInt(v.id) && isObj(v.request) ? { type: 'embed', id: v.id, request: v.request as unknown as EmbedRequest } : null;
    case 'configure':
      return isInt(v.maxBatch, 1, 256) ? { type: 'configure', maxBatch: v.maxBatch } : null;
    case 'shutdown':
      return { type: 'shutdown' };
    default:
      return null;
  }
}

/**
 * Checks the structure of a prefix KV snapshot (token ids; per layer float32 keys/values whose
 * length matches a 4-d shape whose token axis equals the token count). Whether it fits the loaded
 * model is checked by the engine.
 */
export function parsePrefixSnapshot(v: unknown): PrefixKvSnapshot | null {
  if (!isObj(v) || !Array.isArray(v.tokens) || v.tokens.length === 0 || v.tokens.length > LIMITS.maxPromptTokens) return null;
  if (!v.tokens.every((t) => isInt(t, 0, LIMITS.maxTokenId))) return null;
  if (!Array.isArray(v.layers) || v.layers.length === 0 || v.layers.length > 1024) return null;
  const T = v.tokens.length;
  for (const l of v.layers as unknown[]) {
    if (!isObj(l) || l.dtype !== 'float32' || !Array.isArray(l.shape) || l.shape.length !== 4) return null;
    if (!l.shape.every((d) => isInt(d, 1, 1 << 24)) || l.shape[2] !== T) return null;
    const n = (l.shape as number[]).reduce((a, b) => a * b, 1);
    if (!(l.keys instanceof Float32Array) || !(l.values instanceof Float32Array)) return null;
    if (l.keys.length !== n || l.values.length !== n) return null;
  }
  return v as unknown as PrefixKvSnapshot;
}

const ERROR_CODES: ReadonlySet<EngineErrorCode> = new Set<EngineErrorCode>([
  'engine_crashed',
  'engine_unavailable',
  'model_load_failed',
  'context_length_exceeded',
  'invalid_request',
  'internal_error',
]);
const FINISH = new Set(['stop', 'length', 'cancelled']);
const POOLINGS = new Set<string>(['last', 'mean', 'first']);
const STOP_REASONS = new Set(['eos', 'stop_string', 'max_tokens', 'cancelled']);

function parseEvent(e: unknown): EngineEvent | null {
  if (!isObj(e) || !isStr(e.requestId, 128)) return null;
  switch (e.type) {
    case 'prefill':
      return isInt(e.promptTokens) && isInt(e.cachedTokens) && isInt(e.processed) ? (e as unknown as EngineEvent) : null;
    case 'delta':
      return isStr(e.text, 1_000_000) && isInt(e.tokens) && (e.logprobs === undefined || isTokenLogprobList(e.logprobs))
        ? (e as unknown as EngineEvent)
        : null;
    case 'done':
      return FINISH.has(e.finishReason as string) &&
        STOP_REASONS.has(e.stopReason as string) &&
        isInt(e.promptTokens) &&
        isInt(e.cachedTokens) &&
        isInt(e.completionTokens) &&
        isNum(e.ttftMs) &&
        isNum(e.prefillMs) &&
        isNum(e.decodeMs) &&
        (e.stopString === undefined || isStr(e.stopString, 65_536)) &&
        (e.draftTokens === undefined || isInt(e.draftTokens)) &&
        (e.acceptedDrafts === undefined || isInt(e.acceptedDrafts))
        ? (e as unknown as EngineEvent)
        : null;
    case 'error':
      return ERROR_CODES.has(e.code as EngineErrorCode) && isStr(e.message) ? (e as unknown as EngineEvent) : null;
    default:
      return null;
  }
}

/** Parses a message received by the parent; null when it is not a valid EngineMessage. */
export function parseEngineMessage(v: unknown): EngineMessage | null {
  if (!isObj(v) || !isStr(v.type, 32)) return null;
  switch (v.type) {
    case 'hello':
      return isInt(v.protocol) && isInt(v.pid) ? { type: 'hello', protocol: v.protocol, pid: v.pid } : null;
    case 'ready':
      return isObj(v.model) && isStr(v.model.id) && isNum(v.loadMs)
        ? { type: 'ready', model: v.model as unknown as ModelInfo, loadMs: v.loadMs }
        : null;
    case 'load_failed':
      return isStr(v.message) ? { type: 'load_failed', message: v.message } : null;
    case 'event': {
      const event = parseEvent(v.event);
      return event ? { type: 'event', event } : null;
    }
    case 'stats':
      return isInt(v.id) && isObj(v.stats) && isNum(v.stats.rssBytes)
        ? { type: 'stats', id: v.id, stats: v.stats as unknown as EngineStats }
        : null;
    case 'fatal':
      return isStr(v.message) ? { type: 'fatal', message: v.message } : null;
    case 'prefix_export_result': {
      if (!isInt(v.id) || !Array.isArray(v.entries)) return null;
      const entries: PrefixKvSnapshot[] = [];
      for (const e of v.entries) {
        const p = parsePrefixSnapshot(e);
        if (!p) return null;
        entries.push(p);
      }
      return { type: 'prefix_export_result', id: v.id, entries, ...(isStr(v.error) ? { error: v.error } : {}) };
    }
    case 'prefix_clear_result':
      return isInt(v.id) && isInt(v.freedBytes) ? { type: 'prefix_clear_result', id: v.id, freedBytes: v.freedBytes } : null;
    case 'prefix_import_result':
      return isInt(v.id) && typeof v.ok === 'boolean'
        ? { type: 'prefix_import_result', id: v.id, ok: v.ok, ...(isStr(v.error) ? { error: v.error } : {}) }
        : null;
    case 'embed_result': {
      if (!isInt(v.id) || !isInt(v.promptTokens) || !POOLINGS.has(v.pooling as string) || !Array.isArray(v.embeddings)) return null;
      if (!v.embeddings.every((e) => e instanceof Float32Array)) return null;
      let error: { code: EngineErrorCode; message: string } | undefined;
      if (v.error !== undefined) {
        const e = v.error;
        if (!isObj(e) || !ERROR_CODES.has(e.code as EngineErrorCode) || !isStr(e.message)) return null;
        error = { code: e.code as EngineErrorCode, message: e.message };
      }
      return {
        type: 'embed_result',
        id: v.id,
        embeddings: v.embeddings as Float32Array[],
        promptTokens: v.promptTokens,
        pooling: v.pooling as EmbeddingPooling,
        ...(error ? { error } : {}),
        ...(v.cancelled === true ? { cancelled: true } : {}),
      };
    }
    default:
      return null;
  }
}

/** The `done` event of a generation that was cancelled before producing anything more. */
export function cancelledDoneEvent(requestId: string, promptTokens = 0): EngineEvent {
  return {
    type: 'done',
    requestId,
    finishReason: 'cancelled',
    stopReason: 'cancelled',
    promptTokens,
    cachedTokens: 0,
    completionTokens: 0,
    ttftMs: 0,
    prefillMs: 0,
    decodeMs: 0,
  };
}
