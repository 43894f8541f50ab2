// Validates OpenAI request bodies into normalized requests. Every rejection is a 400 ApiError
// with `param` naming the offending field. Ranges follow the OpenAI API and close the crash
// classes seen in llama.cpp (#19367, CVE-2026-21869): non-finite or out-of-range numbers never
// reach the engine. Unknown harmless fields are ignored; fields whose semantics we do not
// implement (n > 1, logit_bias) are rejected, never silently dropped. logprobs (chat: `logprobs` +
// `top_logprobs` 0..20; completions: `logprobs` 0..20) are supported. JSON response
// formats and forced tool calls are enforced by constrained decoding (main/engine/constrain); a
// schema it cannot enforce is a 400 naming the keyword, never ignored.
import { ApiError } from '../common/errors.ts';
import type { GenerationConstraint, SamplingParams } from '../engine/types.ts';
import type { ChatMessage, ToolDefinition } from './hooks.ts';
import { schemaVerdict } from './schema-verdicts.ts';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const present = (v: unknown) => v !== undefined && v !== null;
/** Lone surrogates (`"\ud800"` in JSON) become U+FFFD so the tokenizer never sees invalid UTF-16. */
const wellFormed = (s: string): string => (s as unknown as { toWellFormed(): string }).toWellFormed();

export type ToolChoice = 'none' | 'auto' | 'required' | { name: string };

interface CommonRequest {
  /** As sent (validated as a short string); matched against the loaded model's names. */
  model: string | null;
  /** Per-request context cap (Ollama `options.num_ctx`); the model's own limit when absent or larger. */
  contextCap?: number;
  stream: boolean;
  includeUsage: boolean;
  /** Sampling without maxTokens (decided after counting prompt tokens). */
  sampling: Omit<SamplingParams, 'maxTokens'>;
  /** Requested cap, null when the client set none. */
  maxTokens: number | null;
  /** From response_format json_object / json_schema; null for text. */
  constraint: GenerationConstraint | null;
  /** Log-probabilities requested: the number of alternatives per token (0..20); null = off. */
  logprobs: number | null;
}

export interface ChatRequest extends CommonRequest {
  kind: 'chat';
  messages: ChatMessage[];
  /** Tools to render into the prompt (null when none or tool_choice is none). */
  tools: ToolDefinition[] | null;
  toolChoice: ToolChoice;
  /** `chat_template_kwargs` (vLLM / llama-server): extra template variables, e.g. enable_thinking. */
  templateKwargs: Record<string, unknown> | null;
  /**
   * Split a leading `<think>…</think>` block out of the answer (`reasoning_content`). Default on;
   * llama-server's `reasoning_format: "none"` keeps it in `content`.
   */
  splitReasoning: boolean;
}

export interface CompletionRequest extends CommonRequest {
  kind: 'completions';
  prompt: string | number[];
}

const bad = (param: string, message: string) => new ApiError('invalid_value', message, { param });

function num(body: Obj, key: string, min: number, max: number, opts: { minExclusive?: boolean; int?: boolean } = {}): number | undefined {
  const v = body[key];
  if (!present(v)) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(key, `'${key}' must be a finite number`);
  if (opts.int && !Number.isInteger(v)) throw bad(key, `'${key}' must be an integer`);
  if (v < min || v > max || (opts.minExclusive && v === min)) {
    throw bad(key, `'${key}' must be ${opts.minExclusive ? '>' : '>='} ${min} and <= ${max}`);
  }
  return v;
}

function bool(body: Obj, key: string): boolean | undefined {
  const v = body[key];
  if (!present(v)) return undefined;
  if (typeof v !== 'boolean') throw bad(key, `'${key}' must be a boolean`);
  return v;
}

function parseMaxTokens(body: Obj): number | null {
  const read = (key: string) => {
    const v = body[key];
    if (!present(v)) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw bad(key, `'${key}' must be a positive integer`);
    return v;
  };
  const a = read('max_completion_tokens');
  const b = read('max_tokens');
  if (a !== undefined && b !== undefined && a !== b) {
    throw bad('max_tokens', "'max_tokens' and 'max_completion_tokens' disagree; send one of them");
  }
  return a ?? b ?? null;
}

function parseStop(body: Obj, maxLen: number): string[] {
  const v = body.stop;
  if (!present(v)) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list)) throw bad('stop', "'stop' must be a string or an array of strings");
  if (list.length > 4) throw bad('stop', "'stop' accepts at most 4 sequences");
  for (const s of list) {
    if (typeof s !== 'string' || s.length === 0) throw bad('stop', "'stop' entries must be non-empty strings");
    if (s.length > maxLen) throw bad('stop', `'stop' entries must be at most ${maxLen} characters`);
  }
  return (list as string[]).map((s) => wellFormed(s));
}

/** Most alternatives per token (OpenAI's limit for top_logprobs; vLLM's default max_logprobs). */
export const MAX_TOP_LOGPROBS = 20;

/**
 * Chat: `logprobs: true` + `top_logprobs` 0..20 (top_logprobs > 0 needs logprobs true, as OpenAI).
 * Completions (legacy): `logprobs: N`, 0..20 alternatives (OpenAI allows 5, vLLM and llama-server more);
 * 0 reports the chosen tokens only. Returns the alternatives per token, or null when off.
 */
function parseLogprobs(body: Obj, kind: 'chat' | 'completions'): number | null {
  const lp = body.logprobs;
  const intIn = (v: unknown, key: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_TOP_LOGPROBS) {
      throw bad(key, `'${key}' must be an integer between 0 and ${MAX_TOP_LOGPROBS}`);
    }
    return v;
  };
  if (kind === 'completions') {
    if (present(body.top_logprobs) && body.top_logprobs !== 0) throw bad('top_logprobs', "'top_logprobs' is a chat parameter; /v1/completions takes 'logprobs': N");
    if (!present(lp) || lp === false) return null;
    return intIn(lp, 'logprobs');
  }
  if (present(lp) && typeof lp !== 'boolean') throw bad('logprobs', "'logprobs' must be a boolean");
  const top = present(body.top_logprobs) ? intIn(body.top_logprobs, 'top_logprobs') : 0;
  if (lp !== true) {
    if (top > 0) throw bad('top_logprobs', "'top_logprobs' requires 'logprobs': true");
    return null;
  }
  return top;
}

function parseCommon(body: Obj, maxStopLength: number, kind: 'chat' | 'completions'): CommonRequest {
  let model: string | null = null;
  if (present(body.model)) {
    if (typeof body.model !== 'string') throw bad('model', "'model' must be a string");
    model = body.model;
  }
  const stream = bool(body, 'stream') ?? false;
  let includeUsage = false;
  if (present(body.stream_options)) {
    if (!stream) throw bad('stream_options', "'stream_options' is only allowed when 'stream' is true");
    if (!isObj(body.stream_options)) throw bad('stream_options', "'stream_options' must be an object");
    const iu = (body.stream_options as Obj).include_usage;
    if (present(iu) && typeof iu !== 'boolean') throw bad('stream_options.include_usage', "'include_usage' must be a boolean");
    includeUsage = iu === true;
  }
  if (present(body.n) && body.n !== 1) {
    if (typeof body.n !== 'number' || !Number.isInteger(body.n) || body.n < 1) throw bad('n', "'n' must be a positive integer");
    throw new ApiError('unsupported_parameter', "'n' > 1 is not supported: one choice per request", { param: 'n' });
  }
  const logprobs = parseLogprobs(body, kind);
  if (present(body.logit_bias)) {
    if (!isObj(body.logit_bias)) throw bad('logit_bias', "'logit_bias' must be an object");
    if (Object.keys(body.logit_bias).length > 0) {
      throw new ApiError('unsupported_parameter', "'logit_bias' is not supported by this server", { param: 'logit_bias' });
    }
  }
  const constraint = parseResponseFormat(body.response_format);
  const temperature = num(body, 'temperature', 0, 2) ?? 1;
  const topP = num(body, 'top_p', 0, 1, { minExclusive: true }) ?? 1;
  const topK = num(body, 'top_k', 0, 1_000_000, { int: true }) ?? 0;
  const minP = num(body, 'min_p', 0, 1) ?? 0;
  const presencePenalty = num(body, 'presence_penalty', -2, 2) ?? 0;
  const frequencyPenalty = num(body, 'frequency_penalty', -2, 2) ?? 0;
  const repetitionPenalty = num(body, 'repetition_penalty', 0, 10, { minExclusive: true }) ?? 1;
  let seed: number | undefined;
  if (present(body.seed)) {
    if (typeof body.seed !== 'number' || !Number.isSafeInteger(body.seed)) throw bad('seed', "'seed' must be an integer");
    seed = body.seed;
  }
  const stop = parseStop(body, maxStopLength);
  const maxTokens = parseMaxTokens(body);
  return {
    model,
    stream,
    includeUsage,
    maxTokens,
    sampling: { temperature, topP, topK, minP, repetitionPenalty, presencePenalty, frequencyPenalty, seed, stop },
    constraint,
    logprobs,
  };
}

/**
 * Compiles a schema the way the engine will; what cannot be enforced is a 400 on `param`. A large
 * body's schemas were compiled in the prompt worker that parsed it: that verdict is used as is.
 */
export function checkSchema(schema: unknown, param: string, what: string): void {
  const v = schemaVerdict(schema);
  if (v.ok) return;
  throw bad(param, v.message !== null ? `${what}: ${v.message}` : `${what} is not a valid JSON Schema`);
}

/**
 * OpenAI's response_format: `text`, `json_object` (any JSON object) or
 * `json_schema: {name, schema, strict?, description?}` (the output validates against `schema`).
 * As lenient as llama-server and LM Studio where clients differ: `name` may be absent, `strict`
 * may be the string "true"/"false" (LM Studio's docs show it so; we always enforce anyway), and
 * llama-server's `{type: 'json_object', schema}` means that schema.
 */
function parseResponseFormat(rf: unknown): GenerationConstraint | null {
  if (!present(rf)) return null;
  if (!isObj(rf) || typeof rf.type !== 'string') throw bad('response_format', "'response_format' must be an object with a 'type'");
  if (rf.type === 'text') return null;
  if (rf.type === 'json_object') {
    if (!present(rf.schema)) return { schema: null };
    if (!isObj(rf.schema)) throw bad('response_format', "'response_format.schema' must be a JSON Schema object");
    checkSchema(rf.schema, 'response_format', 'response_format.schema');
    return { schema: rf.schema };
  }
  if (rf.type !== 'json_schema') throw bad('response_format', "'response_format.type' must be 'text', 'json_object' or 'json_schema'");
  const js = rf.json_schema;
  if (!isObj(js)) throw bad('response_format', "'response_format.json_schema' must be an object with 'name' and 'schema'");
  if (present(js.name) && (typeof js.name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(js.name))) {
    throw bad('response_format', "'response_format.json_schema.name' must be 1-64 characters of a-z, A-Z, 0-9, _ and -");
  }
  if (present(js.strict) && typeof js.strict !== 'boolean' && js.strict !== 'true' && js.strict !== 'false') {
    throw bad('response_format', "'response_format.json_schema.strict' must be a boolean");
  }
  if (!isObj(js.schema)) throw bad('response_format', "'response_format.json_schema.schema' must be a JSON Schema object");
  checkSchema(js.schema, 'response_format', 'response_format.json_schema.schema');
  return { schema: js.schema };
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);
const TOOL_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

function parseContent(v: unknown, param: string, nullable: boolean): string | null {
  if (v === null || v === undefined) {
    if (nullable) return null;
    throw bad(param, `'${param}' is required`);
  }
  if (typeof v === 'string') return wellFormed(v);
  if (Array.isArray(v)) {
    let out = '';
    for (let i = 0; i < v.length; i++) {
      const part = v[i];
      if (!isObj(part) || typeof part.type !== 'string') throw bad(`${param}[${i}]`, 'content parts must be objects with a type');
      if (part.type !== 'text') {
        throw new ApiError('unsupported_parameter', `content part type '${String(part.type).slice(0, 32)}' is not supported (text only)`, {
          param: `${param}[${i}].type`,
        });
      }
      if (typeof part.text !== 'string') throw bad(`${param}[${i}].text`, "text parts need a string 'text'");
      out += part.text;
    }
    return wellFormed(out);
  }
  throw bad(param, `'${param}' must be a string or an array of text parts`);
}

function parseMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v)) throw bad('messages', "'messages' must be an array of message objects");
  if (v.length === 0) throw bad('messages', "'messages' must contain at least one message");
  return v.map((m, i) => {
    const p = `messages[${i}]`;
    if (!isObj(m)) throw bad('messages', `${p} must be an object`);
    if (typeof m.role !== 'string') throw bad('messages', `${p}.role must be a string`);
    if (!ROLES.has(m.role)) throw bad('messages', `${p}.role must be one of system, developer, user, assistant, tool`);
    const role = m.role as ChatMessage['role'];
    const msg: ChatMessage = { role, content: null };
    if (role === 'assistant' && present(m.tool_calls)) {
      if (!Array.isArray(m.tool_calls)) throw bad('messages', `${p}.tool_calls must be an array`);
      msg.tool_calls = m.tool_calls.map((tc, j) => {
        const tp = `${p}.tool_calls[${j}]`;
        if (!isObj(tc) || !isObj(tc.function) || typeof tc.function.name !== 'string') {
          throw bad('messages', `${tp} must be {id, type: 'function', function: {name, arguments}}`);
        }
        const args = tc.function.arguments;
        if (present(args) && typeof args !== 'string') throw bad('messages', `${tp}.function.arguments must be a JSON string`);
        return {
          id: typeof tc.id === 'string' ? tc.id : `call_${i}_${j}`,
          type: 'function' as const,
          function: { name: tc.function.name, arguments: (args as string | undefined) ?? '{}' },
        };
      });
    }
    try {
      msg.content = parseContent(m.content, `${p}.content`, role === 'assistant');
    } catch (err) {
      // The llama.cpp matrix expects param "messages" for any malformed message.
      if (err instanceof ApiError && err.code === 'invalid_value') throw bad('messages', err.message);
      throw err;
    }
    if (present(m.name)) {
      if (typeof m.name !== 'string') throw bad('messages', `${p}.name must be a string`);
      msg.name = m.name;
    }
    // Earlier reasoning (DeepSeek/Qwen `reasoning_content`, what we return): thinking templates
    // render it or drop it as they were written to.
    if (role === 'assistant' && present(m.reasoning_content)) {
      if (typeof m.reasoning_content !== 'string') throw bad('messages', `${p}.reasoning_content must be a string`);
      msg.reasoning_content = wellFormed(m.reasoning_content);
    }
    if (role === 'tool' && present(m.tool_call_id)) {
      if (typeof m.tool_call_id !== 'string') throw bad('messages', `${p}.tool_call_id must be a string`);
      msg.tool_call_id = m.tool_call_id;
    }
    return msg;
  });
}

function parseTools(body: Obj): { tools: ToolDefinition[] | null; toolChoice: ToolChoice } {
  let tools: ToolDefinition[] | null = null;
  if (present(body.tools)) {
    if (!Array.isArray(body.tools)) throw bad('tools', "'tools' must be an array");
    if (body.tools.length > 128) throw bad('tools', "'tools' accepts at most 128 tools");
    const names = new Set<string>();
    tools = body.tools.map((t, i) => {
      const p = `tools[${i}]`;
      if (!isObj(t) || t.type !== 'function' || !isObj(t.function)) throw bad(p, `${p} must be {type: 'function', function: {...}}`);
      const f = t.function;
      if (typeof f.name !== 'string' || !TOOL_NAME_RE.test(f.name)) {
        throw bad(`${p}.function.name`, 'tool names must be 1-64 characters of a-z, A-Z, 0-9, _ . -');
      }
      if (names.has(f.name)) throw bad(`${p}.function.name`, `duplicate tool name '${f.name}'`);
      names.add(f.name);
      if (present(f.description) && typeof f.description !== 'string') throw bad(`${p}.function.description`, 'must be a string');
      if (present(f.parameters) && !isObj(f.parameters)) throw bad(`${p}.function.parameters`, 'must be a JSON Schema object');
      const def: ToolDefinition = { type: 'function', function: { name: f.name } };
      if (typeof f.description === 'string') def.function.description = f.description;
      if (isObj(f.parameters)) def.function.parameters = f.parameters;
      return def;
    });
    if (tools.length === 0) tools = null;
  }
  let toolChoice: ToolChoice = 'auto';
  const tc = body.tool_choice;
  if (present(tc)) {
    if (tc === 'none' || tc === 'auto' || tc === 'required') toolChoice = tc;
    else if (isObj(tc) && tc.type === 'function' && isObj(tc.function) && typeof tc.function.name === 'string') {
      toolChoice = { name: tc.function.name };
    } else {
      throw bad('tool_choice', "'tool_choice' must be 'none', 'auto', 'required' or {type: 'function', function: {name}}");
    }
    if (toolChoice !== 'none' && toolChoice !== 'auto' && !tools) {
      throw bad('tool_choice', "'tool_choice' requires 'tools'");
    }
    if (toolChoice === 'required' || typeof toolChoice === 'object') {
      // Forced calls are enforced by constrained decoding: their parameter schemas must compile.
      tools!.forEach((t, i) => {
        if (typeof toolChoice === 'object' && t.function.name !== toolChoice.name) return;
        if (t.function.parameters !== undefined) {
          checkSchema(t.function.parameters, `tools[${i}].function.parameters`, `tools[${i}].function.parameters`);
          const type = t.function.parameters.type;
          if (type !== undefined && type !== 'object') throw bad(`tools[${i}].function.parameters`, "a tool's parameters must be an object schema (type: 'object')");
        }
      });
    }
    if (typeof toolChoice === 'object') {
      const name = toolChoice.name;
      const found = tools?.find((t) => t.function.name === name);
      if (!found) throw bad('tool_choice', `'tool_choice' names a function that is not in 'tools'`);
      // Only the chosen tool is offered to the model; decoding forces a call to it.
      tools = [found];
    }
  }
  if (toolChoice === 'none') tools = null;
  return { tools, toolChoice };
}

/** Names the template reads from the request itself or our globals: not settable as kwargs. */
const RESERVED_TEMPLATE_VARS = new Set(['messages', 'tools', 'add_generation_prompt', 'raise_exception', 'strftime_now', 'range', 'bos_token', 'eos_token', 'pad_token', 'unk_token']);
const MAX_TEMPLATE_KWARGS_BYTES = 8 * 1024;

/** `chat_template_kwargs`: a small JSON object of template variables (names like identifiers). */
function parseTemplateKwargs(body: Obj): Record<string, unknown> | null {
  const raw = body.chat_template_kwargs;
  if (!present(raw)) return null;
  const param = 'chat_template_kwargs';
  if (!isObj(raw)) throw bad(param, "'chat_template_kwargs' must be an object of template variables");
  const keys = Object.keys(raw);
  if (keys.length > 32) throw bad(param, "'chat_template_kwargs' may set at most 32 variables");
  for (const k of keys) {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(k)) throw bad(param, "'chat_template_kwargs' keys must be identifiers (letters, digits, _)");
    if (RESERVED_TEMPLATE_VARS.has(k)) throw bad(param, `'chat_template_kwargs' cannot set '${k}': it comes from the request or the server`);
  }
  if (JSON.stringify(raw).length > MAX_TEMPLATE_KWARGS_BYTES) throw bad(param, "'chat_template_kwargs' is larger than 8 KB");
  return { ...raw };
}

export function validateChatRequest(body: Obj, opts: { maxStopLength: number }): ChatRequest {
  const messages = parseMessages(body.messages);
  const common = parseCommon(body, opts.maxStopLength, 'chat');
  const { tools, toolChoice } = parseTools(body);
  const rf = body.reasoning_format;
  if (present(rf) && rf !== 'none' && rf !== 'auto' && rf !== 'deepseek') {
    throw bad('reasoning_format', "'reasoning_format' must be 'auto', 'deepseek' or 'none'");
  }
  return { kind: 'chat', ...common, messages, tools, toolChoice, templateKwargs: parseTemplateKwargs(body), splitReasoning: rf !== 'none' };
}

export function validateCompletionRequest(body: Obj, opts: { maxStopLength: number; vocabSize: number }): CompletionRequest {
  let prompt: string | number[];
  const p = body.prompt;
  if (typeof p === 'string') prompt = wellFormed(p);
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'number')) {
    if (!p.every((x) => Number.isInteger(x) && x >= 0 && x < opts.vocabSize)) throw bad('prompt', 'token ids must be integers within the vocabulary');
    prompt = p as number[];
  } else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') prompt = wellFormed(p[0] as string);
  else if (Array.isArray(p) && p.length > 1) {
    throw new ApiError('unsupported_parameter', 'only one prompt per request is supported', { param: 'prompt' });
  } else throw bad('prompt', "'prompt' must be a string (or an array of token ids)");
  if (body.echo === true) throw new ApiError('unsupported_parameter', "'echo' is not supported", { param: 'echo' });
  if (present(body.suffix)) throw new ApiError('unsupported_parameter', "'suffix' is not supported", { param: 'suffix' });
  if (present(body.best_of) && body.best_of !== 1) throw new ApiError('unsupported_parameter', "'best_of' > 1 is not supported", { param: 'best_of' });
  const common = parseCommon(body, opts.maxStopLength, 'completions');
  return { kind: 'completions', ...common, prompt };
}
