// Translation between our internal chat request / output events and the OpenAI Chat Completions
// wire format every upstream speaks (vLLM, SGLang, llama-server, Ollama's /v1, LM Studio, another
// MLX Bar). Whatever front door a request came in by (OpenAI, Anthropic, Responses, Ollama), it is
// one internal ChatRequest by the time it is forwarded, so one translation serves them all.
import type { ChatRequest, CompletionRequest, ToolChoice } from '../validate.ts';
import type { OutputEvent } from '../output-split.ts';

/** What the end of an upstream answer tells us (usage may be missing: some upstreams omit it). */
export interface UpstreamSummary {
  finishReason: 'stop' | 'length' | 'tool_calls';
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
  /** Whether the upstream reported usage (else the token counts are our estimate: 0 prompt, chunks for completion). */
  usageReported: boolean;
}

function toolChoiceWire(c: ToolChoice): unknown {
  if (typeof c === 'string') return c;
  return { type: 'function', function: { name: c.name } };
}

/** The sampling fields of an OpenAI body (chat and completions alike). */
function samplingWire(req: ChatRequest | CompletionRequest, body: Record<string, unknown>, opts: { stream: boolean; maxTokens: number | null }): void {
  const s = req.sampling;
  if (opts.stream) body.stream_options = { include_usage: true };
  if (opts.maxTokens !== null) body.max_tokens = opts.maxTokens;
  // Defaults are left out so the upstream's own defaults (and its validation) apply unchanged.
  body.temperature = s.temperature;
  if (s.topP !== 1) body.top_p = s.topP;
  if (s.topK > 0) body.top_k = s.topK;
  if (s.minP > 0) body.min_p = s.minP;
  if (s.repetitionPenalty !== 1) body.repetition_penalty = s.repetitionPenalty;
  if (s.presencePenalty !== 0) body.presence_penalty = s.presencePenalty;
  if (s.frequencyPenalty !== 0) body.frequency_penalty = s.frequencyPenalty;
  if (s.seed !== undefined) body.seed = s.seed;
  if (s.stop.length) body.stop = s.stop;
}

/** The OpenAI request body for an internal chat request (model filled in by the upstream client). */
export function toUpstreamChatBody(req: ChatRequest, opts: { stream: boolean; maxTokens: number | null }): Record<string, unknown> {
  const body: Record<string, unknown> = {
    messages: req.messages,
    stream: opts.stream,
  };
  samplingWire(req, body, opts);
  if (req.tools?.length) {
    body.tools = req.tools;
    body.tool_choice = toolChoiceWire(req.toolChoice);
  }
  if (req.constraint) {
    body.response_format = req.constraint.schema
      ? { type: 'json_schema', json_schema: { name: 'response', schema: req.constraint.schema, strict: true } }
      : { type: 'json_object' };
  }
  if (req.logprobs !== null) {
    body.logprobs = true;
    body.top_logprobs = req.logprobs;
  }
  if (req.templateKwargs) body.chat_template_kwargs = req.templateKwargs;
  return body;
}

/**
 * The OpenAI /completions body for an internal completion request. A token-id prompt is passed as
 * is: the ids are the upstream model's (the client chose that model), we have no tokenizer for it.
 */
export function toUpstreamCompletionBody(req: CompletionRequest, opts: { stream: boolean; maxTokens: number | null }): Record<string, unknown> {
  const body: Record<string, unknown> = { prompt: req.prompt, stream: opts.stream };
  samplingWire(req, body, opts);
  return body;
}

type Obj = Record<string, any>;

function finishOf(v: unknown): UpstreamSummary['finishReason'] | null {
  if (v === 'length') return 'length';
  if (v === 'tool_calls' || v === 'function_call') return 'tool_calls';
  if (typeof v === 'string') return 'stop';
  return null;
}

/**
 * Reads an upstream stream chunk by chunk into our output events. Tool-call fragments are mapped
 * to our `tool_call` (first fragment of an index: id + name) and `tool_call_arguments` events;
 * `reasoning_content` (vLLM, llama-server, another MLX Bar) becomes reasoning.
 */
export class UpstreamStreamReader {
  private finish: UpstreamSummary['finishReason'] | null = null;
  private usage: Obj | null = null;
  private readonly seenCalls = new Map<number, string>();
  private chunks = 0;

  push(chunk: unknown): OutputEvent[] {
    const out: OutputEvent[] = [];
    if (!chunk || typeof chunk !== 'object') return out;
    const c = chunk as Obj;
    if (c.usage && typeof c.usage === 'object') this.usage = c.usage;
    const choice = Array.isArray(c.choices) ? (c.choices[0] as Obj | undefined) : undefined;
    if (!choice) return out;
    // A /completions chunk: `choices[0].text`.
    if (typeof choice.text === 'string' && choice.text) {
      out.push({ type: 'content', text: choice.text });
      this.chunks++;
    }
    const d = (choice.delta ?? {}) as Obj;
    const reasoning = typeof d.reasoning_content === 'string' ? d.reasoning_content : typeof d.reasoning === 'string' ? d.reasoning : '';
    if (reasoning) out.push({ type: 'reasoning', text: reasoning });
    if (typeof d.content === 'string' && d.content) {
      out.push({ type: 'content', text: d.content });
      this.chunks++;
    }
    if (Array.isArray(d.tool_calls)) {
      for (const tc of d.tool_calls as Obj[]) {
        const index = Number.isInteger(tc.index) ? (tc.index as number) : 0;
        const fn = (tc.function ?? {}) as Obj;
        if (!this.seenCalls.has(index)) {
          const id = typeof tc.id === 'string' && tc.id ? tc.id : `call_remote_${index}`;
          this.seenCalls.set(index, id);
          out.push({ type: 'tool_call', index, id, name: typeof fn.name === 'string' ? fn.name : '' });
        }
        if (typeof fn.arguments === 'string' && fn.arguments) {
          out.push({ type: 'tool_call_arguments', index, argumentsDelta: fn.arguments });
          this.chunks++;
        }
      }
    }
    const f = finishOf(choice.finish_reason);
    if (f) this.finish = f;
    return out;
  }

  summary(): UpstreamSummary {
    return summaryOf(this.finish, this.usage, this.chunks, this.seenCalls.size > 0);
  }
}

function summaryOf(finish: UpstreamSummary['finishReason'] | null, usage: Obj | null, chunks: number, hadCalls: boolean): UpstreamSummary {
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
  return {
    finishReason: finish ?? (hadCalls ? 'tool_calls' : 'stop'),
    promptTokens: n(usage?.prompt_tokens),
    cachedTokens: n(usage?.prompt_tokens_details?.cached_tokens),
    completionTokens: usage ? n(usage.completion_tokens) : chunks,
    usageReported: usage !== null,
  };
}

/** A whole (non-stream) upstream chat.completion as our output events + summary. */
export function upstreamCompletionToEvents(json: unknown): { events: OutputEvent[]; summary: UpstreamSummary } {
  const c = (json ?? {}) as Obj;
  const choice = (Array.isArray(c.choices) ? c.choices[0] : undefined) as Obj | undefined;
  const msg = (choice?.message ?? {}) as Obj;
  const events: OutputEvent[] = [];
  const reasoning = typeof msg.reasoning_content === 'string' ? msg.reasoning_content : typeof msg.reasoning === 'string' ? msg.reasoning : '';
  if (reasoning) events.push({ type: 'reasoning', text: reasoning });
  if (typeof msg.content === 'string' && msg.content) events.push({ type: 'content', text: msg.content });
  const calls = Array.isArray(msg.tool_calls) ? (msg.tool_calls as Obj[]) : [];
  calls.forEach((tc, index) => {
    const fn = (tc.function ?? {}) as Obj;
    events.push({ type: 'tool_call', index, id: typeof tc.id === 'string' ? tc.id : `call_remote_${index}`, name: String(fn.name ?? '') });
    if (typeof fn.arguments === 'string' && fn.arguments) events.push({ type: 'tool_call_arguments', index, argumentsDelta: fn.arguments });
  });
  const usage = c.usage && typeof c.usage === 'object' ? (c.usage as Obj) : null;
  return { events, summary: summaryOf(finishOf(choice?.finish_reason), usage, events.length, calls.length > 0) };
}
