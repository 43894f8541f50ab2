// Prompt preparation, the step of the life cycle between the lease and the response cache: render
// the chat template (tools, template variables, the thinking switch for forced output) or take the
// completion prompt, tokenize, check it against the model's context, clamp max_tokens, choose the
// decoding constraint, and build the response-cache key of deterministic requests.
import { ApiError } from '../common/errors.ts';
import type { GenerationConstraint, ModelInfo, SamplingParams } from '../engine/types.ts';
import { contextLimitOf } from './models.ts';
import { lazyToolCallConstraint, toolCallConstraint, ToolSchemaError } from '../engine/constrain/index.ts';
import { randomId, type PreparedGeneration, type ResponseFormat } from './generation.ts';
import type { ResponseCacheKey, ServerTextPipeline } from './hooks.ts';
import type { ServedModelLease } from './models.ts';
import { promptOpensThinking } from './output-split.ts';
import { checkPromptBounds } from './prompt-bounds.ts';
import type { RequestTrack } from './track.ts';
import type { ChatRequest, CompletionRequest } from './validate.ts';

/**
 * THE internal request every generating API translates its body into (validate.ts has the fields:
 * messages/prompt, tools, toolChoice, constraint (json_object / json_schema), sampling (temperature,
 * top_p/k, penalties, seed, stop), maxTokens, logprobs, templateKwargs, stream, includeUsage, …).
 */
export type InternalRequest = ChatRequest | CompletionRequest;

export function encodePrompt(r: ChatRequest | CompletionRequest, text: ServerTextPipeline): { ids: number[]; text: string | null } {
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
export function templateKwargsFor(r: ChatRequest, text: ServerTextPipeline): Record<string, unknown> | null {
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
export function constraintFor(r: ChatRequest | CompletionRequest, text: ServerTextPipeline): GenerationConstraint | null {
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

export function prepareGeneration(
  r: InternalRequest,
  track: RequestTrack,
  lease: ServedModelLease,
  format: ResponseFormat,
  opts: { defaultMaxTokens: number; responseCache: boolean; contextLimit?: (model: ModelInfo) => number },
): PreparedGeneration {
  const modelId = lease.id;
  const info = lease.info;
  // Refuse what cannot fit before the (event-loop) render + tokenize: see prompt-bounds.ts.
  checkPromptBounds(r, info.contextLength);
  const prompt = encodePrompt(r, lease.text);
  const promptIds = prompt.ids;
  if (promptIds.length === 0) throw new ApiError('invalid_value', 'The prompt is empty', { param: r.kind === 'chat' ? 'messages' : 'prompt' });
  track.promptTokens = promptIds.length;
  const limit = contextLimitOf(info, opts.contextLimit);
  // A request may ask for less context than the server allows (Ollama's num_ctx), never more.
  const capped = r.contextCap !== undefined && r.contextCap < limit;
  const ctx = capped ? r.contextCap! : limit;
  if (promptIds.length >= ctx) {
    throw new ApiError(
      'context_length_exceeded',
      capped
        ? `This request's context (num_ctx) is ${ctx} tokens, but the prompt has ${promptIds.length} tokens`
        : `This model's maximum context length is ${ctx} tokens, but the prompt has ${promptIds.length} tokens`,
      { param: r.kind === 'chat' ? 'messages' : 'prompt' },
    );
  }
  const remaining = ctx - promptIds.length;
  const maxTokens = Math.min(r.maxTokens ?? opts.defaultMaxTokens, remaining);
  const sampling: SamplingParams = { ...r.sampling, maxTokens };
  if (sampling.seed === undefined) delete sampling.seed;
  const toolsActive = r.kind === 'chat' && r.tools !== null && lease.text.toolCallFormat !== 'none';
  const constraint = constraintFor(r, lease.text);
  const deterministic = sampling.temperature === 0 || sampling.seed !== undefined;
  // Requests with logprobs bypass the response cache (it stores text only; replaying without
  // the numbers would be wrong, and a key that includes them would still store none).
  const cacheKey: ResponseCacheKey | null =
    deterministic && r.logprobs === null && opts.responseCache
      ? { route: r.kind, modelFingerprint: info.fingerprint, promptIds, sampling, toolsActive, ...(constraint ? { constraint } : {}) }
      : null;
  return {
    route: r.kind,
    id: randomId(format.idPrefix ?? (r.kind === 'chat' ? 'chatcmpl-' : 'cmpl-')),
    created: Math.floor(Date.now() / 1000),
    modelId,
    systemFingerprint: `fp_${info.fingerprint.slice(0, 12)}`,
    promptIds,
    sampling,
    stream: r.stream,
    includeUsage: r.includeUsage,
    toolsActive,
    constraint,
    logprobs: r.logprobs,
    cacheKey,
    // Logprob tokens concatenate to `content`: with logprobs the think block stays in it.
    reasoning: r.kind === 'chat' && r.splitReasoning && r.logprobs === null,
    startInThinking: prompt.text !== null && promptOpensThinking(prompt.text),
    format,
  };
}
