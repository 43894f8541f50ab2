// OpenAI Responses API (`POST /v1/responses`) request → the server's internal chat request.
//
// The Responses body is checked field by field against openai-node 6.x `ResponseCreateParamsBase`
// (resources/responses/responses.d.ts) and translated into an OpenAI chat body, which then goes
// through the one chat validator (validate.ts): ranges, tool schemas and JSON-schema enforcement are
// decided in one place for every API. Errors name the Responses field (`input`, `text.format`,
// `max_output_tokens`, `tools[i].parameters` …), never the chat field it was mapped to.
//
// What we cannot do is refused with a 400 that says so (hosted tools, images/files, background
// runs, conversations, prompt templates, truncation "auto"); nothing is silently dropped.
// `previous_response_id` is resolved by the caller against the response store (store.ts).
import { ApiError } from '../../common/errors.ts';
import type { ChatMessage } from '../hooks.ts';
import { validateChatRequest, type ChatRequest } from '../validate.ts';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const present = (v: unknown) => v !== undefined && v !== null;
const bad = (param: string, message: string) => new ApiError('invalid_value', message, { param });
const unsupported = (param: string, message: string) => new ApiError('unsupported_parameter', message, { param });

/** The validated request: the internal chat request plus what the Response object echoes back. */
export interface ResponsesRequest {
  /** The internal request (kind 'chat'); `messages` already include instructions and history. */
  chat: ChatRequest;
  /** Messages of this request's `input` only (no instructions, no history): what a stored response appends. */
  inputMessages: ChatMessage[];
  /** The stored conversation `previous_response_id` continues ([] without one). */
  history: ChatMessage[];
  instructions: string | null;
  previousResponseId: string | null;
  /** `store` (OpenAI's default is true): keep the response for GET /v1/responses/{id} and `previous_response_id`. */
  store: boolean;
  /** Echoed in the Response object, as sent (normalized). */
  echo: {
    tools: Obj[];
    tool_choice: unknown;
    text: { format: Obj };
    temperature: number;
    top_p: number;
    max_output_tokens: number | null;
    metadata: Record<string, string>;
    parallel_tool_calls: boolean;
    reasoning: { effort: string | null; summary: string | null };
    user: string | null;
    prompt_cache_key: string | null;
    safety_identifier: string | null;
  };
}

export interface ResponsesRequestOptions {
  maxStopLength: number;
  /** The stored conversation `previous_response_id` names (messages, without its instructions); null when not given. */
  history?: ChatMessage[] | null;
}

/**
 * String fields of ResponseCreateParamsBase we accept and echo without acting on them: `user` and
 * `safety_identifier` (abuse tracking on OpenAI's side), `prompt_cache_key` / `prompt_cache_retention`
 * (our prefix cache is automatic: the longest common token prefix of recent prompts is reused),
 * `service_tier` (one tier here).
 */
const STRING_HINTS = ['user', 'safety_identifier', 'prompt_cache_key', 'prompt_cache_retention', 'service_tier'];

/** Fields we refuse (with the reason) when they ask for something we do not do. */
function refuseUnsupported(body: Obj): void {
  if (body.background === true) throw unsupported('background', "'background' responses are not supported: send the request and wait for it (or stream it)");
  if (present(body.conversation)) throw unsupported('conversation', "'conversation' is not supported; use 'previous_response_id' or send the whole 'input'");
  if (present(body.prompt)) throw unsupported('prompt', "prompt templates ('prompt') are not supported; send 'instructions' and 'input'");
  if (present(body.truncation) && body.truncation !== 'disabled') {
    if (body.truncation !== 'auto') throw bad('truncation', "'truncation' must be 'auto' or 'disabled'");
    throw unsupported('truncation', "'truncation: auto' is not supported: a conversation longer than the context is a 400 context_length_exceeded");
  }
  if (present(body.context_management)) throw unsupported('context_management', "'context_management' is not supported");
  if (present(body.moderation)) throw unsupported('moderation', "'moderation' is not supported");
  if (present(body.top_logprobs) && body.top_logprobs !== 0) {
    throw unsupported('top_logprobs', "'top_logprobs' is not supported on /v1/responses; use /v1/chat/completions with 'logprobs'");
  }
  if (present(body.include)) {
    if (!Array.isArray(body.include) || !body.include.every((x) => typeof x === 'string')) throw bad('include', "'include' must be an array of strings");
    for (const inc of body.include as string[]) {
      // Encrypted reasoning is what stateless clients (Codex CLI with store:false) ask for; we
      // return the reasoning text itself in the reasoning item, so there is nothing to encrypt.
      if (inc === 'reasoning.encrypted_content') continue;
      throw unsupported('include', `'include' value '${inc.slice(0, 64)}' is not supported`);
    }
  }
  if (present(body.parallel_tool_calls) && typeof body.parallel_tool_calls !== 'boolean') throw bad('parallel_tool_calls', "'parallel_tool_calls' must be a boolean");
}

/** Text of a message's `content`: a string or a list of input_text / output_text / refusal parts. */
function contentText(content: unknown, param: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw bad(param, `'${param}' must be a string or an array of content parts`);
  let out = '';
  content.forEach((part, i) => {
    const p = `${param}[${i}]`;
    if (!isObj(part) || typeof part.type !== 'string') throw bad(p, `'${p}' must be a content part object with a 'type'`);
    if (part.type === 'input_text' || part.type === 'output_text' || part.type === 'text') {
      if (typeof part.text !== 'string') throw bad(`${p}.text`, `'${p}.text' must be a string`);
      out += part.text;
    } else if (part.type === 'refusal') {
      if (typeof part.refusal !== 'string') throw bad(`${p}.refusal`, `'${p}.refusal' must be a string`);
      out += part.refusal;
    } else {
      throw unsupported(`${p}.type`, `content part type '${part.type.slice(0, 32)}' is not supported (text only: input_text, output_text)`);
    }
  });
  return out;
}

/**
 * `input` → chat messages. Items: messages (EasyInputMessage / Message / ResponseOutputMessage),
 * `function_call` (→ the assistant's tool_calls, consecutive calls grouped into one turn),
 * `function_call_output` (→ a tool message), `reasoning` (→ the next assistant turn's
 * reasoning_content, which thinking templates render or drop as they do for chat).
 */
export function inputToMessages(input: unknown): ChatMessage[] {
  if (typeof input === 'string') return [{ role: 'user', content: input }];
  if (!Array.isArray(input)) throw bad('input', "'input' must be a string or an array of input items");
  const out: ChatMessage[] = [];
  let pendingReasoning: string | null = null;
  /** The assistant turn function calls attach to (the previous item's, when it was the assistant). */
  const assistantTurn = (): ChatMessage => {
    const last = out[out.length - 1];
    if (last && last.role === 'assistant') return last;
    const m: ChatMessage = { role: 'assistant', content: null };
    if (pendingReasoning !== null) m.reasoning_content = pendingReasoning;
    pendingReasoning = null;
    out.push(m);
    return m;
  };
  input.forEach((item, i) => {
    const p = `input[${i}]`;
    if (!isObj(item)) throw bad(p, `'${p}' must be an object`);
    const type = item.type ?? 'message';
    if (type === 'message') {
      const role = item.role;
      if (role !== 'user' && role !== 'assistant' && role !== 'system' && role !== 'developer') {
        throw bad(`${p}.role`, `'${p}.role' must be one of user, assistant, system, developer`);
      }
      const text = contentText(item.content, `${p}.content`);
      const m: ChatMessage = { role, content: text };
      if (role === 'assistant' && pendingReasoning !== null) {
        m.reasoning_content = pendingReasoning;
        pendingReasoning = null;
      }
      // An assistant text item right after another assistant item (text, then its calls) is one turn.
      const last = out[out.length - 1];
      if (role === 'assistant' && last?.role === 'assistant' && !last.tool_calls) {
        last.content = `${last.content ?? ''}${text}`;
        return;
      }
      out.push(m);
    } else if (type === 'function_call') {
      if (typeof item.name !== 'string' || item.name === '') throw bad(`${p}.name`, `'${p}.name' must be a non-empty string`);
      if (typeof item.call_id !== 'string' || item.call_id === '') throw bad(`${p}.call_id`, `'${p}.call_id' must be a non-empty string`);
      if (typeof item.arguments !== 'string') throw bad(`${p}.arguments`, `'${p}.arguments' must be a JSON string`);
      const turn = assistantTurn();
      (turn.tool_calls ??= []).push({ id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } });
    } else if (type === 'function_call_output') {
      if (typeof item.call_id !== 'string' || item.call_id === '') throw bad(`${p}.call_id`, `'${p}.call_id' must be a non-empty string`);
      const output = typeof item.output === 'string' ? item.output : contentText(item.output, `${p}.output`);
      out.push({ role: 'tool', content: output, tool_call_id: item.call_id });
    } else if (type === 'reasoning') {
      const parts = Array.isArray(item.content) ? item.content : [];
      const text = parts
        .map((c) => (isObj(c) && typeof c.text === 'string' ? c.text : ''))
        .join('');
      const summary = Array.isArray(item.summary) ? item.summary.map((s) => (isObj(s) && typeof s.text === 'string' ? s.text : '')).join('\n') : '';
      pendingReasoning = text || summary || null;
    } else if (type === 'item_reference') {
      throw unsupported(`${p}.type`, "'item_reference' items are not supported; send the item itself or use 'previous_response_id'");
    } else {
      throw unsupported(`${p}.type`, `input item type '${String(type).slice(0, 40)}' is not supported (message, function_call, function_call_output, reasoning)`);
    }
  });
  return out;
}

/** Responses function tools (flat: {type, name, parameters, strict, description}) → chat tools. */
function translateTools(tools: unknown): Obj[] | null {
  if (!present(tools)) return null;
  if (!Array.isArray(tools)) throw bad('tools', "'tools' must be an array");
  return tools.map((t, i) => {
    const p = `tools[${i}]`;
    if (!isObj(t) || typeof t.type !== 'string') throw bad(p, `'${p}' must be a tool object with a 'type'`);
    if (t.type !== 'function') {
      throw unsupported(`${p}.type`, `tool type '${t.type.slice(0, 40)}' is not supported: only 'function' tools (hosted tools run on OpenAI's servers)`);
    }
    if (typeof t.name !== 'string') throw bad(`${p}.name`, `'${p}.name' must be a string`);
    if (present(t.description) && typeof t.description !== 'string') throw bad(`${p}.description`, `'${p}.description' must be a string`);
    if (present(t.parameters) && !isObj(t.parameters)) throw bad(`${p}.parameters`, `'${p}.parameters' must be a JSON Schema object`);
    const fn: Obj = { name: t.name };
    if (typeof t.description === 'string') fn.description = t.description;
    if (isObj(t.parameters)) fn.parameters = t.parameters;
    return { type: 'function', function: fn };
  });
}

/** Responses tool_choice ('none'|'auto'|'required'|{type:'function', name}) → chat tool_choice. */
function translateToolChoice(tc: unknown): unknown {
  if (!present(tc)) return undefined;
  if (tc === 'none' || tc === 'auto' || tc === 'required') return tc;
  if (isObj(tc) && tc.type === 'function') {
    if (typeof tc.name !== 'string') throw bad('tool_choice', "'tool_choice.name' must be a string");
    return { type: 'function', function: { name: tc.name } };
  }
  if (isObj(tc) && typeof tc.type === 'string') {
    throw unsupported('tool_choice', `'tool_choice' type '${tc.type.slice(0, 40)}' is not supported ('none', 'auto', 'required' or {type: 'function', name})`);
  }
  throw bad('tool_choice', "'tool_choice' must be 'none', 'auto', 'required' or {type: 'function', name}");
}

/** `text.format` → chat `response_format` (json_schema is flat here: {type, name, schema, strict}). */
function translateTextFormat(text: unknown): { responseFormat: Obj | undefined; format: Obj } {
  if (!present(text)) return { responseFormat: undefined, format: { type: 'text' } };
  if (!isObj(text)) throw bad('text', "'text' must be an object");
  if (present(text.verbosity) && !['low', 'medium', 'high'].includes(text.verbosity as string)) throw bad('text.verbosity', "'text.verbosity' must be 'low', 'medium' or 'high'");
  const f = text.format;
  if (!present(f)) return { responseFormat: undefined, format: { type: 'text' } };
  if (!isObj(f) || typeof f.type !== 'string') throw bad('text.format', "'text.format' must be an object with a 'type'");
  if (f.type === 'text') return { responseFormat: undefined, format: { type: 'text' } };
  if (f.type === 'json_object') return { responseFormat: { type: 'json_object' }, format: { type: 'json_object' } };
  if (f.type !== 'json_schema') throw bad('text.format.type', "'text.format.type' must be 'text', 'json_object' or 'json_schema'");
  if (!isObj(f.schema)) throw bad('text.format.schema', "'text.format.schema' must be a JSON Schema object");
  if (present(f.name) && typeof f.name !== 'string') throw bad('text.format.name', "'text.format.name' must be a string");
  if (present(f.strict) && typeof f.strict !== 'boolean') throw bad('text.format.strict', "'text.format.strict' must be a boolean");
  const js: Obj = { schema: f.schema };
  if (typeof f.name === 'string') js.name = f.name;
  if (typeof f.strict === 'boolean') js.strict = f.strict;
  const format: Obj = { type: 'json_schema', name: f.name ?? 'response', schema: f.schema, strict: f.strict ?? null };
  if (typeof f.description === 'string') format.description = f.description;
  return { responseFormat: { type: 'json_schema', json_schema: js }, format };
}

/** Chat validator params → the Responses field the client sent. */
function remapParam(param: string | null): string | null {
  if (param === null) return null;
  if (param === 'messages' || param.startsWith('messages[')) return 'input';
  if (param === 'response_format' || param.startsWith('response_format.')) return 'text.format';
  if (param === 'max_tokens' || param === 'max_completion_tokens') return 'max_output_tokens';
  const tool = /^tools\[(\d+)\]\.function\.(.+)$/.exec(param);
  if (tool) return `tools[${tool[1]}].${tool[2]}`;
  return param;
}

function remapMessage(message: string): string {
  return message
    .replace(/response_format\.json_schema\.schema/g, 'text.format.schema')
    .replace(/response_format\.json_schema/g, 'text.format')
    .replace(/response_format/g, 'text.format')
    .replace(/'max_tokens'/g, "'max_output_tokens'")
    .replace(/tools\[(\d+)\]\.function\.parameters/g, 'tools[$1].parameters')
    .replace(/\{type: 'function', function: \{name\}\}/g, "{type: 'function', name}");
}

function metadataOf(v: unknown): Record<string, string> {
  if (!present(v)) return {};
  if (!isObj(v)) throw bad('metadata', "'metadata' must be an object of strings");
  const keys = Object.keys(v);
  if (keys.length > 16) throw bad('metadata', "'metadata' may have at most 16 keys");
  const out: Record<string, string> = {};
  for (const k of keys) {
    const val = v[k];
    if (k.length > 64 || typeof val !== 'string' || val.length > 512) throw bad('metadata', "'metadata' keys are at most 64 characters and values strings of at most 512");
    out[k] = val;
  }
  return out;
}

const optString = (body: Obj, key: string): string | null => {
  const v = body[key];
  if (!present(v)) return null;
  if (typeof v !== 'string') throw bad(key, `'${key}' must be a string`);
  return v;
};

/** Validates a Responses body and translates it (see the file comment). Throws ApiError 400s. */
export function validateResponsesRequest(body: Obj, opts: ResponsesRequestOptions): ResponsesRequest {
  refuseUnsupported(body);
  for (const k of STRING_HINTS) if (present(body[k]) && typeof body[k] !== 'string') throw bad(k, `'${k}' must be a string`);
  if (present(body.stream_options) && !isObj(body.stream_options)) throw bad('stream_options', "'stream_options' must be an object");
  if (!present(body.input) && !present(body.previous_response_id)) throw new ApiError('missing_required_parameter', "Missing 'input'", { param: 'input' });
  const instructions = optString(body, 'instructions');
  const previousResponseId = optString(body, 'previous_response_id');
  if (present(body.store) && typeof body.store !== 'boolean') throw bad('store', "'store' must be a boolean");
  const store = body.store !== false;
  if (present(body.max_output_tokens) && (typeof body.max_output_tokens !== 'number' || !Number.isInteger(body.max_output_tokens) || body.max_output_tokens < 1)) {
    throw bad('max_output_tokens', "'max_output_tokens' must be a positive integer");
  }
  if (present(body.stream) && typeof body.stream !== 'boolean') throw bad('stream', "'stream' must be a boolean");
  const metadata = metadataOf(body.metadata);

  let effort: string | null = null;
  let summary: string | null = null;
  if (present(body.reasoning)) {
    if (!isObj(body.reasoning)) throw bad('reasoning', "'reasoning' must be an object");
    const e = body.reasoning.effort;
    if (present(e) && !['none', 'minimal', 'low', 'medium', 'high', 'xhigh'].includes(e as string)) {
      throw bad('reasoning.effort', "'reasoning.effort' must be one of none, minimal, low, medium, high, xhigh");
    }
    effort = (e as string | undefined) ?? null;
    const s = body.reasoning.summary ?? body.reasoning.generate_summary;
    if (present(s) && !['auto', 'concise', 'detailed'].includes(s as string)) throw bad('reasoning.summary', "'reasoning.summary' must be 'auto', 'concise' or 'detailed'");
    summary = (s as string | undefined) ?? null;
  }

  const inputMessages = present(body.input) ? inputToMessages(body.input) : [];
  const messages: ChatMessage[] = [];
  if (instructions !== null && instructions !== '') messages.push({ role: 'system', content: instructions });
  if (opts.history) messages.push(...opts.history);
  messages.push(...inputMessages);
  if (messages.length === 0) throw bad('input', "'input' must contain at least one item");

  const tools = translateTools(body.tools);
  const toolChoice = translateToolChoice(body.tool_choice);
  const { responseFormat, format } = translateTextFormat(body.text);

  const chatBody: Obj = { messages, stream: body.stream === true };
  if (present(body.model)) chatBody.model = body.model;
  if (tools && tools.length > 0) chatBody.tools = tools;
  if (toolChoice !== undefined) chatBody.tool_choice = toolChoice;
  if (responseFormat) chatBody.response_format = responseFormat;
  if (present(body.max_output_tokens)) chatBody.max_tokens = body.max_output_tokens;
  if (present(body.temperature)) chatBody.temperature = body.temperature;
  if (present(body.top_p)) chatBody.top_p = body.top_p;
  // reasoning.effort "none" (or "minimal") = do not think: the thinking template's non-thinking prompt.
  if (effort === 'none' || effort === 'minimal') chatBody.chat_template_kwargs = { enable_thinking: false };

  let chat: ChatRequest;
  try {
    chat = validateChatRequest(chatBody, { maxStopLength: opts.maxStopLength });
  } catch (err) {
    if (err instanceof ApiError && err.status === 400) {
      throw new ApiError(err.code, remapMessage(err.message), { param: remapParam(err.param) });
    }
    throw err;
  }
  // The chat validator already read tool_choice; echo the Responses form.
  const echoToolChoice = toolChoice === undefined ? 'auto' : isObj(toolChoice) ? { type: 'function', name: (toolChoice.function as Obj).name } : toolChoice;
  return {
    chat,
    inputMessages,
    history: opts.history ?? [],
    instructions,
    previousResponseId,
    store,
    echo: {
      tools: (Array.isArray(body.tools) ? body.tools : []).map((t) => {
        const o = t as Obj;
        return { type: 'function', name: o.name, description: o.description ?? null, parameters: o.parameters ?? null, strict: o.strict ?? null };
      }),
      tool_choice: echoToolChoice,
      text: { format },
      temperature: chat.sampling.temperature,
      top_p: chat.sampling.topP,
      max_output_tokens: chat.maxTokens,
      metadata,
      parallel_tool_calls: body.parallel_tool_calls !== false,
      reasoning: { effort, summary },
      user: typeof body.user === 'string' ? body.user : null,
      prompt_cache_key: typeof body.prompt_cache_key === 'string' ? body.prompt_cache_key : null,
      safety_identifier: typeof body.safety_identifier === 'string' ? body.safety_identifier : null,
    },
  };
}
