// The seams through which other parts plug into the HTTP server. Every hook is optional and a
// no-op by default, so the server runs on its own (headless, tests) and the caches, metrics,
// degradation and settings code attach without the server importing them.
import type { FastifyInstance } from 'fastify';
import type { ApiError } from '../common/errors.ts';
import type { RequestRecord } from '../common/metrics-types.ts';
import type { GenerationConstraint, ModelInfo, SamplingParams } from '../engine/types.ts';

// Chat message and tool shapes are shared with the text pipeline (engine-text owns them).
import type { ChatMessage, ToolCall, ToolCallFormat, ToolDefinition, ToolParserEvent } from '../engine/text/types.ts';
import type { OutputEvent } from './output-split.ts';
export type { ChatMessage, ToolDefinition };

/**
 * The part of engine-text's TextPipeline (main/engine/text/README.md) the server uses. Declared
 * structurally so the real pipeline is passed as is.
 */
export interface ServerTextPipeline {
  /** Raw completion prompts (HF semantics: adds BOS where the tokenizer does). */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  /** Chat template (with generation prompt) + tokenize. Throws ChatTemplateError on bad messages. */
  encodeChat(messages: ChatMessage[], opts?: { tools?: ToolDefinition[]; templateKwargs?: Record<string, unknown> }): { text: string; ids: number[] };
  /** True when the chat template reads this variable (e.g. Qwen3's `enable_thinking`). */
  templateUses?(variable: string): boolean;
  readonly toolCallFormat: ToolCallFormat;
  /** Streaming tool-call parser: content / tool_call / tool_call_arguments events in order. */
  createToolCallParser(): { push(text: string): ToolParserEvent[]; flush(): ToolParserEvent[] };
  parseToolCalls(text: string): { content: string | null; toolCalls: ToolCall[] };
  /**
   * Where the pipeline was loaded from and what it is: with all three, large prompts are rendered
   * by prompt worker threads that load the same pipeline (prompt-pool.ts); else always inline.
   */
  readonly origin?: { modelDir: string } | null;
  readonly tokenizerFingerprint?: string;
  readonly templateFingerprint?: string;
}

/** Key material of a cacheable (deterministic) request; the cache canonicalizes and hashes it. */
export interface ResponseCacheKey {
  route: 'chat' | 'completions';
  modelFingerprint: string;
  promptIds: number[];
  sampling: SamplingParams;
  /** Whether tool calls are parsed out of the text (changes the response shape, not the text). */
  toolsActive: boolean;
  /** Constrained decoding (response_format json_*, forced tool calls): changes the text. */
  constraint?: GenerationConstraint | null;
  /**
   * Remote models (no prompt ids: the upstream renders and tokenizes): the request body as sent
   * upstream (minus the stream flags), so every field the upstream sees is in the key.
   */
  request?: unknown;
}

/** A complete, successful generation. Cancelled, failed or errored generations are never passed. */
export interface CachedGeneration {
  text: string;
  finishReason: 'stop' | 'length';
  stopReason: 'eos' | 'stop_string' | 'max_tokens';
  promptTokens: number;
  completionTokens: number;
  /**
   * Remote models: the output as the upstream split it (reasoning, content, tool calls) — there is
   * no local tokenizer/parser to re-split `text` with. Absent for local generations.
   */
  events?: OutputEvent[];
}

export interface ResponseCacheHook {
  /** Resolve null/undefined on a miss. Throwing/rejecting is treated as a miss. */
  get(key: ResponseCacheKey): CachedGeneration | null | undefined | Promise<CachedGeneration | null | undefined>;
  /** Called only for finished (stop/length) generations of deterministic requests. Errors are ignored. */
  set(key: ResponseCacheKey, value: CachedGeneration): void | Promise<void>;
}

export interface AdmissionInfo {
  /** For 'embeddings', promptTokens is the longest input (inputs run one at a time) and maxTokens 0. */
  route: 'chat' | 'completions' | 'embeddings';
  promptTokens: number;
  maxTokens: number;
  queued: number;
  active: number;
}

/** What a running generation holds (see ServerHooks.reserve). */
export interface GenerationReservation {
  progress(tokens: number): void;
  release(): void;
}

export interface ServerLoad {
  active: number;
  queued: number;
}

export interface ServerHooks {
  /** One record per API request (streamed, errors and cancelled included); not for /health, metrics or dashboard files. */
  onRequestRecord?(record: RequestRecord): void;
  /** Response cache for deterministic requests (temperature 0 or a seed). */
  responseCache?: ResponseCacheHook;
  /** Degradation/shedding gate, asked before a request waits for a slot. Return an ApiError (e.g. 503 with retryAfter) to refuse. */
  admission?(info: AdmissionInfo): ApiError | null;
  /**
   * Asked when a local generation got its slot and is about to start: refuse it (an ApiError, e.g.
   * 503 insufficient_memory because the generations running now may still grow into the memory it
   * needs), or hold memory for it until the engine confirmed its end (`release`). `progress` gets
   * the tokens in its KV as it grows (prompt processed + generated).
   */
  reserve?(info: AdmissionInfo): ApiError | GenerationReservation;
  /**
   * The context limit (prompt + completion tokens) requests on `model` get: the contextLength setting
   * resolved ("auto" = the model's limit capped by memory). Default: the model's own limit.
   */
  contextLimit?(model: ModelInfo): number;
  /** Extra fields merged into GET /health (e.g. degradation). */
  getHealth?(): Record<string, unknown>;
  /** Called whenever the number of running/queued generations changes. */
  onLoad?(load: ServerLoad): void;
  /**
   * Registers /v1/metrics, /metrics and the live feed on the server's fastify instance. It runs
   * inside the server, so the Host/Origin/API-key checks apply to those routes too.
   */
  metricsRoutes?(app: FastifyInstance): void | Promise<void>;
}

/** Facts about the served model beyond ModelInfo. */
export interface ServedModelMeta {
  /** Other names a client may send in `model` (e.g. the folder name). Never used as paths. */
  aliases?: string[];
  /** Random-weight demo model: flagged in /v1/models and /health. */
  demo?: boolean;
  /** Unix seconds for /v1/models `created`. */
  created?: number;
}
