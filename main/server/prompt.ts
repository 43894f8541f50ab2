// Prompt preparation, the step of the life cycle between the lease and the response cache: render
// the chat template (tools, template variables, the thinking switch for forced output) or take the
// completion prompt, tokenize, check it against the model's context, clamp max_tokens, choose the
// decoding constraint, and build the response-cache key of deterministic requests. Rendering,
// tokenizing and the constraint (prompt-render.ts) run in a prompt worker thread when the request
// is large (prompt-pool.ts), so the event loop stays free; the rest here is cheap.
import { ApiError } from '../common/errors.ts';
import type { ModelInfo, SamplingParams } from '../engine/types.ts';
import { contextLimitOf } from './models.ts';
import { randomId, type PreparedGeneration, type ResponseFormat } from './generation.ts';
import type { ResponseCacheKey } from './hooks.ts';
import type { ServedModelLease } from './models.ts';
import { checkPromptBounds } from './prompt-bounds.ts';
import type { PromptPool } from './prompt-pool.ts';
import { promptInput } from './prompt-render.ts';
import type { RequestTrack } from './track.ts';
import type { ChatRequest, CompletionRequest } from './validate.ts';

/**
 * THE internal request every generating API translates its body into (validate.ts has the fields:
 * messages/prompt, tools, toolChoice, constraint (json_object / json_schema), sampling (temperature,
 * top_p/k, penalties, seed, stop), maxTokens, logprobs, templateKwargs, stream, includeUsage, …).
 */
export type InternalRequest = ChatRequest | CompletionRequest;

export { constraintFor, encodePrompt, templateKwargsFor } from './prompt-render.ts';

export async function prepareGeneration(
  r: InternalRequest,
  track: RequestTrack,
  lease: ServedModelLease,
  format: ResponseFormat,
  opts: { defaultMaxTokens: number; responseCache: boolean; contextLimit?: (model: ModelInfo) => number; prompts: PromptPool; signal?: AbortSignal },
): Promise<PreparedGeneration> {
  const modelId = lease.id;
  const info = lease.info;
  // Refuse what cannot fit before rendering at all: see prompt-bounds.ts.
  checkPromptBounds(r, info.contextLength);
  const limit = contextLimitOf(info, opts.contextLimit);
  // A request may ask for less context than the server allows (Ollama's num_ctx), never more.
  const capped = r.contextCap !== undefined && r.contextCap < limit;
  const ctx = capped ? r.contextCap! : limit;
  const rendered = await opts.prompts.render(lease.text, promptInput(r), { signal: opts.signal, keepIdsBelow: ctx });
  const count = rendered.count;
  if (count === 0) throw new ApiError('invalid_value', 'The prompt is empty', { param: r.kind === 'chat' ? 'messages' : 'prompt' });
  track.promptTokens = count;
  if (count >= ctx || rendered.ids === null) {
    throw new ApiError(
      'context_length_exceeded',
      capped
        ? `This request's context (num_ctx) is ${ctx} tokens, but the prompt has ${count} tokens`
        : `This model's maximum context length is ${ctx} tokens, but the prompt has ${count} tokens`,
      { param: r.kind === 'chat' ? 'messages' : 'prompt' },
    );
  }
  const promptIds = rendered.ids;
  const remaining = ctx - promptIds.length;
  const maxTokens = Math.min(r.maxTokens ?? opts.defaultMaxTokens, remaining);
  const sampling: SamplingParams = { ...r.sampling, maxTokens };
  if (sampling.seed === undefined) delete sampling.seed;
  const toolsActive = r.kind === 'chat' && r.tools !== null && lease.text.toolCallFormat !== 'none';
  if ('error' in rendered.constraint) throw rendered.constraint.error;
  const constraint = rendered.constraint.ok;
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
    startInThinking: rendered.opensThinking,
    format,
  };
}
