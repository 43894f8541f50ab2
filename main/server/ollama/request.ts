// Ollama API requests (`/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`) → the
// server's internal requests, field by field after the `ollama` npm package 0.6.4 (ChatRequest,
// GenerateRequest, Options, EmbedRequest) and Ollama's docs/api.md. Like the Responses route, a chat
// or generate body becomes an OpenAI chat (or completion) body checked by the one validator
// (validate.ts); errors name the Ollama field (`options.temperature`, `format`, `messages`).
//
// Options mapped: temperature, top_p, top_k, min_p, seed, stop, num_predict (-1 = the server's
// default length, -2 = until the context is full), repeat_penalty, presence_penalty,
// frequency_penalty, num_ctx (a per-request context cap, never above the server's). The others are
// llama.cpp runtime knobs with no meaning here (num_gpu, num_thread, use_mmap, mirostat, …) and are
// accepted without effect, as Ollama itself does for options a model's runner does not use.
import { ApiError } from '../../common/errors.ts';
import type { ChatMessage } from '../hooks.ts';
import { validateChatRequest, validateCompletionRequest, type ChatRequest, type CompletionRequest } from '../validate.ts';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const present = (v: unknown) => v !== undefined && v !== null;
const bad = (param: string, message: string) => new ApiError('invalid_value', message, { param });
const unsupported = (param: string, message: string) => new ApiError('unsupported_parameter', message, { param });

export interface OllamaCommon {
  /** NDJSON stream (Ollama's default) or one JSON object (`stream: false`). */
  stream: boolean;
  /** `think`: false = the non-thinking prompt; true/level = think (reasoning in `thinking`); null = the template's default. */
  think: boolean | null;
  /** `options.num_ctx`: context cap for this request (prompt + output), null = the model's. */
  numCtx: number | null;
  /** The model name as sent (`:latest` stripped), for echoing in `model`. */
  model: string | null;
}

export interface OllamaChatRequest extends OllamaCommon {
  /** null when `messages` is empty: Ollama's "load the model" request, answered with done_reason "load". */
  chat: ChatRequest | null;
}

export interface OllamaGenerateRequest extends OllamaCommon {
  /** chat (templated prompt) or completions (`raw: true`); null for an empty prompt ("load"). */
  request: ChatRequest | CompletionRequest | null;
}

/** Ollama names carry a tag; ours do not, so `<id>:latest` means `<id>`. Other tags are kept (and will not match). */
export function ollamaModelName(v: unknown): string | null {
  if (!present(v)) return null;
  if (typeof v !== 'string') throw bad('model', "'model' must be a string");
  return v.endsWith(':latest') ? v.slice(0, -':latest'.length) : v;
}

function optNum(o: Obj, key: string): number | undefined {
  const v = o[key];
  if (!present(v)) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(`options.${key}`, `'options.${key}' must be a number`);
  return v;
}

/** Ollama `options` → chat body fields (+ num_ctx). */
function mapOptions(options: unknown, into: Obj): { numCtx: number | null } {
  if (!present(options)) return { numCtx: null };
  if (!isObj(options)) throw bad('options', "'options' must be an object");
  const direct: [string, string][] = [
    ['temperature', 'temperature'],
    ['top_p', 'top_p'],
    ['top_k', 'top_k'],
    ['min_p', 'min_p'],
    ['seed', 'seed'],
    ['repeat_penalty', 'repetition_penalty'],
    ['presence_penalty', 'presence_penalty'],
    ['frequency_penalty', 'frequency_penalty'],
  ];
  for (const [from, to] of direct) {
    const v = optNum(options, from);
    if (v !== undefined) into[to] = v;
  }
  // Ollama treats top_p 0 as "off"; OpenAI ranges require > 0.
  if (into.top_p === 0) delete into.top_p;
  if (present(options.stop)) {
    const s = options.stop;
    if (typeof s === 'string') into.stop = [s];
    else if (Array.isArray(s)) into.stop = s;
    else throw bad('options.stop', "'options.stop' must be an array of strings");
  }
  const np = optNum(options, 'num_predict');
  if (np !== undefined) {
    if (!Number.isInteger(np) || np === 0 || np < -2) throw bad('options.num_predict', "'options.num_predict' must be a positive integer, -1 (default length) or -2 (fill the context)");
    // -2: until the context is full (the server clamps max tokens to the remaining context).
    if (np === -2) into.max_tokens = Number.MAX_SAFE_INTEGER;
    else if (np > 0) into.max_tokens = np;
  }
  let numCtx: number | null = null;
  const nc = optNum(options, 'num_ctx');
  if (nc !== undefined) {
    if (!Number.isInteger(nc) || nc < 1) throw bad('options.num_ctx', "'options.num_ctx' must be a positive integer");
    numCtx = nc;
  }
  return { numCtx };
}

/** `format`: "json" → any JSON object; a JSON Schema object → output valid for it; "" → free text. */
function mapFormat(format: unknown, into: Obj): void {
  if (!present(format) || format === '') return;
  if (format === 'json') into.response_format = { type: 'json_object' };
  else if (isObj(format)) into.response_format = { type: 'json_schema', json_schema: { name: 'format', schema: format } };
  else throw bad('format', "'format' must be \"json\" or a JSON Schema object");
}

function mapThink(v: unknown): boolean | null {
  if (!present(v)) return null;
  if (v === true || v === false) return v;
  if (v === 'high' || v === 'medium' || v === 'low') return true;
  throw bad('think', "'think' must be a boolean or 'high', 'medium', 'low'");
}

function rejectImages(v: unknown, param: string): void {
  if (Array.isArray(v) && v.length > 0) throw unsupported(param, 'images are not supported: this server runs text models only');
}

/** Ollama messages → chat messages (tool_calls arguments are objects in Ollama, JSON strings in OpenAI). */
export function ollamaMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v)) throw bad('messages', "'messages' must be an array");
  return v.map((m, i) => {
    const p = `messages[${i}]`;
    if (!isObj(m)) throw bad('messages', `${p} must be an object`);
    const role = m.role;
    if (role !== 'system' && role !== 'user' && role !== 'assistant' && role !== 'tool') throw bad('messages', `${p}.role must be one of system, user, assistant, tool`);
    rejectImages(m.images, `${p}.images`);
    if (present(m.content) && typeof m.content !== 'string') throw bad('messages', `${p}.content must be a string`);
    const msg: ChatMessage = { role, content: (m.content as string | undefined) ?? '' };
    if (role === 'assistant' && typeof m.thinking === 'string' && m.thinking !== '') msg.reasoning_content = m.thinking;
    if (role === 'assistant' && present(m.tool_calls)) {
      if (!Array.isArray(m.tool_calls)) throw bad('messages', `${p}.tool_calls must be an array`);
      msg.tool_calls = m.tool_calls.map((tc, j) => {
        if (!isObj(tc) || !isObj(tc.function) || typeof tc.function.name !== 'string') throw bad('messages', `${p}.tool_calls[${j}] must be {function: {name, arguments}}`);
        const args = tc.function.arguments;
        const text = typeof args === 'string' ? args : JSON.stringify(args ?? {});
        return { id: typeof tc.id === 'string' ? tc.id : `call_${i}_${j}`, type: 'function' as const, function: { name: tc.function.name, arguments: text } };
      });
      if (msg.content === '') msg.content = null;
    }
    if (role === 'tool') {
      if (typeof m.tool_name === 'string') msg.name = m.tool_name;
      if (typeof m.tool_call_id === 'string') msg.tool_call_id = m.tool_call_id;
    }
    return msg;
  });
}

/** Chat-validator params → Ollama fields. */
function remap(err: unknown): unknown {
  if (!(err instanceof ApiError) || err.status !== 400) return err;
  const p = err.param;
  const map: Record<string, string> = {
    temperature: 'options.temperature',
    top_p: 'options.top_p',
    top_k: 'options.top_k',
    min_p: 'options.min_p',
    seed: 'options.seed',
    stop: 'options.stop',
    repetition_penalty: 'options.repeat_penalty',
    presence_penalty: 'options.presence_penalty',
    frequency_penalty: 'options.frequency_penalty',
    max_tokens: 'options.num_predict',
    response_format: 'format',
  };
  let param = p;
  if (p !== null) {
    if (map[p]) param = map[p];
    else if (p.startsWith('response_format')) param = 'format';
  }
  const message = err.message
    .replace(/response_format\.json_schema\.schema/g, 'format')
    .replace(/'repetition_penalty'/g, "'options.repeat_penalty'")
    .replace(/'(temperature|top_p|top_k|min_p|seed|stop|presence_penalty|frequency_penalty)'/g, "'options.$1'");
  return new ApiError(err.code, message, { param });
}

function common(body: Obj, into: Obj): OllamaCommon {
  if (present(body.stream) && typeof body.stream !== 'boolean') throw bad('stream', "'stream' must be a boolean");
  const model = ollamaModelName(body.model);
  if (model !== null) into.model = model;
  const { numCtx } = mapOptions(body.options, into);
  mapFormat(body.format, into);
  const think = mapThink(body.think);
  if (think === false) into.chat_template_kwargs = { enable_thinking: false };
  if (present(body.logprobs) && body.logprobs !== false) throw unsupported('logprobs', "'logprobs' is not supported on the Ollama API; use /v1/chat/completions");
  // keep_alive is accepted: model unloading follows the server's idleUnloadMinutes setting.
  return { stream: body.stream !== false, think, numCtx, model };
}

export function validateOllamaChat(body: Obj, opts: { maxStopLength: number }): OllamaChatRequest {
  const chatBody: Obj = {};
  const c = common(body, chatBody);
  const messages = present(body.messages) ? ollamaMessages(body.messages) : [];
  if (present(body.tools)) chatBody.tools = body.tools;
  if (messages.length === 0) return { ...c, chat: null };
  chatBody.messages = messages;
  chatBody.stream = c.stream;
  try {
    return { ...c, chat: validateChatRequest(chatBody, opts) };
  } catch (err) {
    throw remap(err);
  }
}

export function validateOllamaGenerate(body: Obj, opts: { maxStopLength: number; vocabSize: number }): OllamaGenerateRequest {
  const into: Obj = {};
  const c = common(body, into);
  if (present(body.prompt) && typeof body.prompt !== 'string') throw bad('prompt', "'prompt' must be a string");
  if (present(body.system) && typeof body.system !== 'string') throw bad('system', "'system' must be a string");
  if (typeof body.suffix === 'string' && body.suffix !== '') throw unsupported('suffix', "'suffix' (fill-in-the-middle) is not supported");
  if (typeof body.template === 'string' && body.template !== '') throw unsupported('template', "a custom 'template' is not supported: the model's own chat template is used (or send raw: true)");
  if (Array.isArray(body.context) && body.context.length > 0) {
    throw unsupported('context', "'context' (token ids of an earlier /api/generate) is not supported; use /api/chat with the conversation's messages");
  }
  rejectImages(body.images, 'images');
  const prompt = (body.prompt as string | undefined) ?? '';
  if (prompt === '') return { ...c, request: null };
  into.stream = c.stream;
  try {
    if (body.raw === true) {
      if (typeof body.system === 'string' && body.system !== '') throw unsupported('system', "'system' has no effect with raw: true; put it in the prompt");
      delete into.chat_template_kwargs;
      return { ...c, request: validateCompletionRequest({ ...into, prompt }, opts) };
    }
    const messages: ChatMessage[] = [];
    if (typeof body.system === 'string' && body.system !== '') messages.push({ role: 'system', content: body.system });
    messages.push({ role: 'user', content: prompt });
    return { ...c, request: validateChatRequest({ ...into, messages }, opts) };
  } catch (err) {
    throw remap(err);
  }
}

/** `/api/embed` ({input: string | string[], truncate = true, dimensions}) → an OpenAI embeddings body. */
export function ollamaEmbedBody(body: Obj): Obj {
  const out: Obj = {};
  const model = ollamaModelName(body.model);
  if (model !== null) out.model = model;
  if (!present(body.input)) throw new ApiError('missing_required_parameter', "Missing 'input'", { param: 'input' });
  out.input = body.input;
  // Ollama truncates by default; `truncate: false` makes an over-long input an error.
  if (present(body.truncate) && typeof body.truncate !== 'boolean') throw bad('truncate', "'truncate' must be a boolean");
  out.truncate = body.truncate !== false;
  if (present(body.dimensions)) out.dimensions = body.dimensions;
  return out;
}

/** Legacy `/api/embeddings` ({prompt}) → an OpenAI embeddings body (one input). */
export function ollamaLegacyEmbeddingsBody(body: Obj): Obj {
  const model = ollamaModelName(body.model);
  if (typeof body.prompt !== 'string') throw bad('prompt', "'prompt' must be a string");
  return { ...(model !== null ? { model } : {}), input: body.prompt, truncate: true };
}
