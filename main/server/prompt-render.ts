// The CPU-heavy, pure part of prompt preparation: render the chat template, tokenize, and build
// the decoding constraint (which compiles every tool schema). It is O(request size) and runs
// either inline on the event loop (small prompts) or in a prompt worker thread (prompt-pool.ts,
// prompt-worker.ts) — the same code in both places, so both give the same token ids and the same
// constraint, hence the same prefix/response-cache keys. Imports nothing that needs the server:
// the worker loads this module and engine-text only.
import { ApiError, toApiError, type ErrorCode } from '../common/errors.ts';
import { lazyToolCallConstraint, toolCallConstraint, ToolSchemaError } from '../engine/constrain/index.ts';
import { promptOpensThinking } from '../engine/text/reasoning.ts';
import type { GenerationConstraint } from '../engine/types.ts';
import type { ServerTextPipeline } from './hooks.ts';
import type { ChatRequest, CompletionRequest } from './validate.ts';

/** What rendering needs of a request (the rest of it never leaves the event loop). */
export type PromptInput =
  | Pick<ChatRequest, 'kind' | 'messages' | 'tools' | 'toolChoice' | 'constraint' | 'templateKwargs'>
  | Pick<CompletionRequest, 'kind' | 'prompt' | 'constraint'>;

/** The fields of `r` that rendering reads: what travels to a worker. */
export function promptInput(r: ChatRequest | CompletionRequest): PromptInput {
  if (r.kind === 'chat') return { kind: 'chat', messages: r.messages, tools: r.tools, toolChoice: r.toolChoice, constraint: r.constraint, templateKwargs: r.templateKwargs };
  return { kind: 'completions', prompt: r.prompt, constraint: r.constraint };
}

/** The rendered prompt of one request. */
export interface PromptWork {
  ids: number[];
  /** The rendered prompt ends inside an open `<think>` block (output-split's startInThinking). */
  opensThinking: boolean;
  /**
   * The request's decoding constraint, or the error building it would raise. The error is kept,
   * not thrown, so the caller reports problems in the order it always did (an over-long prompt
   * before a bad tool schema).
   */
  constraint: { ok: GenerationConstraint | null } | { error: ApiError };
}

type RenderPipeline = Pick<ServerTextPipeline, 'encode' | 'encodeChat' | 'templateUses' | 'toolCallFormat'>;

export function encodePrompt(r: PromptInput, text: RenderPipeline): { ids: number[]; text: string | null } {
  try {
    if (r.kind === 'chat') {
      const templateKwargs = templateKwargsFor(r, text);
      return text.encodeChat(r.messages, { ...(r.tools ? { tools: r.tools } : {}), ...(templateKwargs ? { templateKwargs } : {}) });
    }
    if (typeof r.prompt === 'string') return { ids: text.encode(r.prompt), text: null };
    return { ids: r.prompt, text: null };
  } catch (err) {
    if (err instanceof ApiError) throw err;
    // Template errors (e.g. "roles must alternate") are the client's to fix: 400, sanitized.
    throw new ApiError('invalid_request', `Could not render the prompt: ${(err as Error)?.message ?? 'template error'}`, {
      param: r.kind === 'chat' ? 'messages' : 'prompt',
    });
  }
}

/**
 * Template variables of a chat request: the client's `chat_template_kwargs`, plus one default of
 * ours — when the output is forced (response_format JSON, or a required/named tool call) a
 * template with a thinking switch (Qwen3's `enable_thinking`) renders its non-thinking prompt,
 * since the constraint would not let the model open a think block anyway. An explicit
 * `enable_thinking` from the client always wins.
 */
export function templateKwargsFor(r: Pick<ChatRequest, 'constraint' | 'tools' | 'toolChoice' | 'templateKwargs'>, text: Pick<ServerTextPipeline, 'templateUses'>): Record<string, unknown> | null {
  const forced = r.constraint !== null || (r.tools !== null && (r.toolChoice === 'required' || typeof r.toolChoice === 'object'));
  const kwargs = r.templateKwargs ? { ...r.templateKwargs } : {};
  if (forced && !('enable_thinking' in kwargs) && text.templateUses?.('enable_thinking')) kwargs.enable_thinking = false;
  return Object.keys(kwargs).length ? kwargs : null;
}

/**
 * The decoding constraint of a request: a forced tool call (tool_choice 'required' or a named
 * function) in the model's own tool-call format, else the response_format's JSON constraint,
 * else (tools with tool_choice 'auto') a lazy one that holds calls the model starts to the schemas.
 */
export function constraintFor(r: PromptInput, text: Pick<ServerTextPipeline, 'toolCallFormat'>): GenerationConstraint | null {
  if (r.kind === 'chat' && r.tools && (r.toolChoice === 'required' || typeof r.toolChoice === 'object')) {
    let c: GenerationConstraint | null;
    try {
      c = toolCallConstraint(text.toolCallFormat, r.tools);
    } catch (err) {
      if (err instanceof ToolSchemaError) throw new ApiError('invalid_value', `tools: ${err.message}`, { param: 'tools' });
      throw err;
    }
    if (!c) {
      throw new ApiError('unsupported_parameter', "This model's chat template has no tool-call format, so a tool call cannot be forced", {
        param: 'tool_choice',
      });
    }
    return c;
  }
  if (r.constraint) return r.constraint;
  // tool_choice auto: a call the model starts on its own is held to the tools' schemas (lazily,
  // from its `<tool_call>` marker on); plain answers stay free.
  if (r.kind === 'chat' && r.tools && r.toolChoice === 'auto') return lazyToolCallConstraint(text.toolCallFormat, r.tools);
  return null;
}

/** Renders + tokenizes a request and builds its constraint (`withConstraint: false` skips it, e.g. token counting). */
export function renderPrompt(r: PromptInput, text: RenderPipeline, opts: { withConstraint?: boolean } = {}): PromptWork {
  const prompt = encodePrompt(r, text);
  let constraint: PromptWork['constraint'] = { ok: null };
  if (opts.withConstraint !== false) {
    try {
      constraint = { ok: constraintFor(r, text) };
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      constraint = { error: err };
    }
  }
  return { ids: prompt.ids, opensThinking: prompt.text !== null && promptOpensThinking(prompt.text), constraint };
}

/** Tokenizes embedding inputs (HF semantics: special tokens as the tokenizer adds them). */
export function encodeTexts(texts: readonly string[], text: Pick<ServerTextPipeline, 'encode'>): number[][] {
  return texts.map((s) => text.encode(s));
}

/** An ApiError as it crosses a thread boundary (class instances do not survive structured clone). */
export interface WireError {
  code: ErrorCode;
  message: string;
  param: string | null;
  status: number;
}

/** Any error → what the client may see, as toApiError decides inline (never a stack or path). */
export function toWireError(err: unknown): WireError {
  const e = toApiError(err);
  return { code: e.code, message: e.message, param: e.param, status: e.status };
}

export function fromWireError(e: WireError): ApiError {
  return new ApiError(e.code, e.message, { param: e.param, status: e.status });
}
