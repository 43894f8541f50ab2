// Opt-in response cache for deterministic requests (temperature 0, or a fixed seed).
//
// Key: sha256 of a canonical, normalized request — the rendered prompt (token ids, which already
// include the chat template and tools), or the raw messages/prompt/tools when ids are not at hand —
// plus the normalized sampling parameters (defaults filled in, stop strings sorted, seed dropped at
// temperature 0 where it cannot change the output), max tokens, the response shape (tools parsed or
// not) and the model / tokenizer / template / engine fingerprints. The same prompt under another
// model, template or parameters can therefore never hit.
//
// Storage: an in-memory LRU (lru-cache, bounded by entries and bytes) in front of the verified
// disk store. Only complete successful generations are stored (finish reason stop / length /
// tool_calls); anything cancelled, failed or truncated by a disconnect is refused here, whatever the
// caller passes. While the degradation machine has the cache disabled, get/set are no-ops.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { canonicalDigest, CanonicalizeError } from './canonical.ts';
import type { EntryStore } from './entry-store.ts';
import type { CacheHealth } from '../hardening/degradation.ts';
import { DEFAULT_SAMPLING, type SamplingParams } from '../engine/types.ts';
import type { CachedGeneration, ResponseCacheHook, ResponseCacheKey } from '../server/hooks.ts';

export interface CacheFingerprints {
  /** ModelInfo.fingerprint (config + weights metadata). */
  model: string;
  /** Hash of tokenizer.json / tokenizer_config.json. */
  tokenizer: string;
  /** Hash of the chat template source. */
  template: string;
  /** Engine version (+ compute dtype): a new engine may produce different tokens. */
  engine: string;
}

export interface ResponseCacheRequest {
  route: 'chat' | 'completions';
  /** Rendered prompt token ids (preferred: exact for template + tokenizer). */
  promptIds?: number[];
  /** Raw request material, used when promptIds are absent. */
  messages?: unknown;
  prompt?: unknown;
  tools?: unknown;
  toolChoice?: unknown;
  responseFormat?: unknown;
  /** Whether tool calls are parsed out of the text (changes the response shape). */
  toolsActive?: boolean;
  sampling: Partial<SamplingParams> & { temperature: number };
  /** Number of choices; only n = 1 is cacheable. */
  n?: number;
  /** Log probabilities are not stored, so requests asking for them are not cacheable. */
  logprobs?: boolean | number | null;
  /** Model fingerprint as the server saw it (redundant with fingerprints.model; both are keyed). */
  modelFingerprint?: string;
}

export interface CachedToolCall {
  id?: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A complete, successful generation as stored and served back. */
export interface CachedResponse {
  /** Raw generated text (the server may re-parse tool calls from it). */
  text: string;
  finishReason: 'stop' | 'length' | 'tool_calls';
  stopReason?: 'eos' | 'stop_string' | 'max_tokens';
  promptTokens: number;
  completionTokens: number;
  /** Optional parsed form, for callers that store content and tool calls separately. */
  content?: string | null;
  toolCalls?: CachedToolCall[] | null;
  /** Remote models: the output events as the upstream split them (server/output-split.ts OutputEvent). */
  events?: CachedOutputEvent[];
}

/** One output event of a remote answer (reasoning / content text, a tool call's start or arguments). */
export type CachedOutputEvent =
  | { type: 'reasoning' | 'content'; text: string }
  | { type: 'tool_call'; index: number; id: string; name: string }
  | { type: 'tool_call_arguments'; index: number; argumentsDelta: string };

function eventRefusal(ev: unknown): string | null {
  if (!ev || typeof ev !== 'object') return 'bad event';
  const e = ev as Record<string, unknown>;
  switch (e.type) {
    case 'reasoning':
    case 'content':
      return typeof e.text === 'string' ? null : 'bad event';
    case 'tool_call':
      return isNonNegInt(e.index) && typeof e.id === 'string' && typeof e.name === 'string' ? null : 'bad event';
    case 'tool_call_arguments':
      return isNonNegInt(e.index) && typeof e.argumentsDelta === 'string' ? null : 'bad event';
    default:
      return 'bad event';
  }
}

export interface ResponseCacheOptions {
  store: EntryStore;
  fingerprints: CacheFingerprints;
  health?: CacheHealth;
  /** Opt-in: false (default) makes every request non-cacheable. */
  enabled?: boolean;
  memoryMaxEntries?: number;
  memoryMaxBytes?: number;
}

export interface ResponseCacheStats {
  enabled: boolean;
  hits: number;
  memoryHits: number;
  diskHits: number;
  misses: number;
  bypassed: number;
  stores: number;
  refused: number;
  memoryEntries: number;
  /** Bytes of the in-memory front (lru-cache's size calculation). */
  memoryBytes: number;
  /** Entries and bytes in the integrity-checked store on disk (the cache's real contents). */
  storedEntries: number;
  storedBytes: number;
}

const KEY_VERSION = 1;
const FINISH = new Set(['stop', 'length', 'tool_calls']);
const STOP_REASONS = new Set(['eos', 'stop_string', 'max_tokens']);

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

/** Why `value` must not be stored, or null if it is a complete successful generation. */
export function refuseReason(value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const v = value as Record<string, unknown>;
  if ('error' in v && v.error) return 'error result';
  if (typeof v.text !== 'string') return 'no text';
  if (typeof v.finishReason !== 'string' || !FINISH.has(v.finishReason)) return `finish reason ${String(v.finishReason)}`;
  if (v.stopReason !== undefined && (typeof v.stopReason !== 'string' || !STOP_REASONS.has(v.stopReason))) return `stop reason ${String(v.stopReason)}`;
  if (!isNonNegInt(v.promptTokens) || !isNonNegInt(v.completionTokens)) return 'bad usage';
  if (v.content !== undefined && v.content !== null && typeof v.content !== 'string') return 'bad content';
  if (v.toolCalls !== undefined && v.toolCalls !== null) {
    if (!Array.isArray(v.toolCalls)) return 'bad tool calls';
    for (const tc of v.toolCalls) {
      const f = (tc as { function?: { name?: unknown; arguments?: unknown } })?.function;
      if (!f || typeof f.name !== 'string' || typeof f.arguments !== 'string') return 'bad tool call';
    }
  }
  if (v.events !== undefined) {
    if (!Array.isArray(v.events)) return 'bad events';
    for (const ev of v.events) {
      const why = eventRefusal(ev);
      if (why) return why;
    }
  }
  if (v.finishReason === 'tool_calls' && !(Array.isArray(v.toolCalls) && v.toolCalls.length > 0) && !v.text) return 'tool_calls without calls';
  return null;
}

function normalizeSampling(s: ResponseCacheRequest['sampling']): Record<string, unknown> {
  const full: SamplingParams = { ...DEFAULT_SAMPLING, ...s } as SamplingParams;
  const stop = Array.isArray(full.stop) ? [...new Set(full.stop.map(String))].sort() : typeof full.stop === 'string' ? [full.stop] : [];
  const out: Record<string, unknown> = {
    temperature: full.temperature,
    topP: full.topP,
    topK: full.topK,
    minP: full.minP,
    repetitionPenalty: full.repetitionPenalty,
    presencePenalty: full.presencePenalty,
    frequencyPenalty: full.frequencyPenalty,
    maxTokens: full.maxTokens,
    stop,
  };
  // Greedy decoding ignores the seed; keying on it would only split identical results.
  if (full.temperature !== 0 && full.seed !== undefined) out.seed = full.seed;
  return out;
}

function idsDigest(ids: number[]): string | number[] {
  if (!Array.isArray(ids)) return ids;
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i];
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) return ids; // canonical JSON handles the odd case
  }
  const a = Int32Array.from(ids);
  return `i32:${ids.length}:${createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex')}`;
}

export class ResponseCache {
  private readonly store: EntryStore;
  private readonly fingerprints: CacheFingerprints;
  private readonly health: CacheHealth | null;
  private readonly memory: LRUCache<string, CachedResponse>;
  private enabledFlag: boolean;
  private readonly counters = { hits: 0, memoryHits: 0, diskHits: 0, misses: 0, bypassed: 0, stores: 0, refused: 0 };

  constructor(opts: ResponseCacheOptions) {
    this.store = opts.store;
    this.fingerprints = opts.fingerprints;
    this.health = opts.health ?? null;
    this.enabledFlag = opts.enabled ?? false;
    this.memory = new LRUCache<string, CachedResponse>({
      max: opts.memoryMaxEntries ?? 256,
      maxSize: opts.memoryMaxBytes ?? 32 * 1024 * 1024,
      sizeCalculation: (v) => Math.max(1, 2 * (v.text.length + (v.content?.length ?? 0)) + (v.events ? 64 * v.events.length + 2 * v.text.length : 0) + 256),
    });
  }

  get enabled(): boolean {
    return this.enabledFlag;
  }

  /** Settings change (opt-in toggle). Disabling also drops the in-memory copies. */
  setEnabled(on: boolean): void {
    this.enabledFlag = on;
    if (!on) this.memory.clear();
  }

  /** Deterministic and representable: temperature 0 or an integer seed, one choice, no logprobs. */
  isCacheable(req: ResponseCacheRequest): boolean {
    if (!this.enabledFlag || !req || typeof req !== 'object') return false;
    if (req.route !== 'chat' && req.route !== 'completions') return false;
    const s = req.sampling;
    if (!s || typeof s.temperature !== 'number') return false;
    const deterministic = s.temperature === 0 || (typeof s.seed === 'number' && Number.isSafeInteger(s.seed));
    if (!deterministic) return false;
    if (req.n !== undefined && req.n !== 1) return false;
    if (req.logprobs) return false;
    return true;
  }

  /**
   * The cache key (64 hex chars) of a request, or null when the request cannot be keyed (cyclic or
   * absurdly large input). Deeply nested input is handled iteratively (no RangeError).
   */
  keyFor(req: ResponseCacheRequest, fingerprints: CacheFingerprints = this.fingerprints): string | null {
    try {
      const material = {
        v: KEY_VERSION,
        route: req.route,
        // Token ids are hashed as raw int32 bytes: ~50× faster than canonical JSON on a 30k-token
        // prompt, and this runs on every cacheable request.
        promptIds: req.promptIds ? idsDigest(req.promptIds) : null,
        messages: req.promptIds ? null : (req.messages ?? null),
        prompt: req.promptIds ? null : (req.prompt ?? null),
        tools: req.tools ?? null,
        toolChoice: req.toolChoice ?? null,
        responseFormat: req.responseFormat ?? null,
        toolsActive: req.toolsActive ?? false,
        sampling: normalizeSampling(req.sampling),
        n: req.n ?? 1,
        modelFingerprint: req.modelFingerprint ?? null,
        fp: { model: fingerprints.model, tokenizer: fingerprints.tokenizer, template: fingerprints.template, engine: fingerprints.engine },
      };
      return canonicalDigest(material);
    } catch (err) {
      if (err instanceof CanonicalizeError || err instanceof RangeError || err instanceof TypeError) return null;
      return null;
    }
  }

  private usable(): boolean {
    if (!this.enabledFlag) return false;
    if (this.health && !this.health.cacheAllowed()) {
      this.counters.bypassed++;
      return false;
    }
    return true;
  }

  /** The stored response for `key`, or null. Never throws. */
  async get(key: string): Promise<CachedResponse | null> {
    if (!this.usable()) return null;
    const mem = this.memory.get(key);
    if (mem) {
      this.counters.hits++;
      this.counters.memoryHits++;
      return structuredClone(mem);
    }
    const stored = await this.store.get(key);
    if (!stored) {
      this.counters.misses++;
      return null;
    }
    let value: unknown;
    try {
      value = JSON.parse(stored.payload.toString('utf8'));
    } catch {
      value = null;
    }
    if (refuseReason(value) !== null) {
      // Checksummed but not a response: written by a buggy or foreign writer. Drop it.
      void this.store.delete(key);
      this.counters.misses++;
      return null;
    }
    const resp = value as CachedResponse;
    this.memory.set(key, resp);
    this.counters.hits++;
    this.counters.diskHits++;
    return structuredClone(resp);
  }

  /**
   * Stores a complete successful generation. Resolves true once durable on disk (the memory copy is
   * immediate), false if refused or not stored. Never rejects; callers need not await it.
   */
  async set(key: string, value: CachedResponse): Promise<boolean> {
    if (!this.usable()) return false;
    if (typeof key !== 'string' || !/^[0-9a-f]{64}$/.test(key) || refuseReason(value) !== null) {
      this.counters.refused++;
      return false;
    }
    const clean: CachedResponse = {
      text: value.text,
      finishReason: value.finishReason,
      ...(value.stopReason ? { stopReason: value.stopReason } : {}),
      promptTokens: value.promptTokens,
      completionTokens: value.completionTokens,
      ...(value.content !== undefined ? { content: value.content } : {}),
      ...(value.toolCalls !== undefined ? { toolCalls: value.toolCalls } : {}),
      ...(value.events !== undefined ? { events: value.events } : {}),
    };
    this.memory.set(key, clean);
    const ok = await this.store.set(key, Buffer.from(JSON.stringify(clean), 'utf8'), { finishReason: clean.finishReason, completionTokens: clean.completionTokens });
    if (ok) this.counters.stores++;
    return ok;
  }

  /** Drops the in-memory copies (memory pressure above the soft watermark); disk entries stay. */
  clearMemory(): void {
    this.memory.clear();
  }

  /** Waits for pending disk writes (graceful shutdown). */
  flush(timeoutMs?: number): Promise<boolean> {
    return this.store.flush(timeoutMs);
  }

  stats(): ResponseCacheStats {
    const stored = this.store.stats();
    return {
      enabled: this.enabledFlag,
      ...this.counters,
      memoryEntries: this.memory.size,
      memoryBytes: this.memory.calculatedSize,
      storedEntries: stored.entries,
      storedBytes: stored.bytes,
    };
  }

  /**
   * Adapter to the server's ResponseCacheHook (main/server/hooks.ts): the server passes its
   * ResponseCacheKey (rendered prompt ids + sampling) and CachedGeneration values.
   */
  serverHook(): ResponseCacheHook {
    const toReq = (k: ResponseCacheKey): ResponseCacheRequest => ({
      route: k.route,
      // A remote model's key is the body sent upstream (it renders and tokenizes); a local one's the prompt ids.
      ...(k.request !== undefined ? { messages: k.request } : { promptIds: k.promptIds }),
      sampling: k.sampling,
      toolsActive: k.toolsActive,
      modelFingerprint: k.modelFingerprint,
      // The constraint (schema + tool-call markup) changes the generated text: part of the key.
      responseFormat: k.constraint ?? null,
    });
    return {
      get: async (k: ResponseCacheKey): Promise<CachedGeneration | null> => {
        const req = toReq(k);
        if (!this.isCacheable(req)) return null;
        const key = this.keyFor(req);
        if (!key) return null;
        const hit = await this.get(key);
        if (!hit || !hit.stopReason || hit.finishReason === 'tool_calls') return null;
        return {
          text: hit.text,
          finishReason: hit.finishReason,
          stopReason: hit.stopReason,
          promptTokens: hit.promptTokens,
          completionTokens: hit.completionTokens,
          ...(hit.events ? { events: hit.events as CachedGeneration['events'] } : {}),
        };
      },
      set: async (k: ResponseCacheKey, v: CachedGeneration): Promise<void> => {
        const req = toReq(k);
        if (!this.isCacheable(req)) return;
        const key = this.keyFor(req);
        if (!key) return;
        await this.set(key, { ...v });
      },
    };
  }
}
