// Anthropic Messages request (POST /v1/messages, /v1/messages/count_tokens) → the server's one
// internal chat request (the same ChatRequest the OpenAI route produces), field by field after the
// official reference and @anthropic-ai/sdk's MessageCreateParams. Every rejection is a 400 with the
// field named in the message. What we cannot do (images, documents, server tools) is refused, never
// silently dropped; what has no meaning here is accepted and ignored, and the README says so:
// `cache_control` (our prefix cache is automatic), `metadata`, `service_tier`, `container`,
// `thinking.budget_tokens` (not enforced), `disable_parallel_tool_use` (forced calls are single).
import { ApiError } from '../../common/errors.ts';
import type { ChatMessage, ToolCall, ToolDefinition } from '../../engine/text/types.ts';
import { checkSchema, type ChatRequest, type ToolChoice } from '../validate.ts';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const present = (v: unknown) => v !== undefined && v !== null;
const wellFormed = (s: string): string => (s as unknown as { toWellFormed(): string }).toWellFormed();
const bad = (param: string, message: string) => new ApiError('invalid_value', message, { param });

/** What the Anthropic route needs beyond the internal request. */
export interface AnthropicRequest {
  chat: ChatRequest;
  /** The request asked for thinking (`thinking.type` enabled/adaptive/between_tools): show `thinking` blocks. */
  thinking: boolean;
  /** `thinking.display: 'omitted'`: thinking blocks are sent with empty text (Anthropic's behaviour). */
  thinkingOmitted: boolean;
}

const TOOL_NAME_RE = /^[A-Za-z0-9_-]{1,128}$/;
export const MAX_STOP_SEQUENCES = 16;

function textOfBlocks(blocks: unknown[], param: string, allowed: ReadonlySet<string>): string {
  let out = '';
  blocks.forEach((b, i) => {
    const p = `${param}[${i}]`;
    if (!isObj(b) || typeof b.type !== 'string') throw bad(p, `${p} must be a content block with a 'type'`);
    if (!allowed.has(b.type)) throw unsupportedBlock(b.type, p);
    if (typeof b.text !== 'string') throw bad(p, `${p}.text must be a string`);
    out += (out ? '\n' : '') + b.text;
  });
  return out;
}

function unsupportedBlock(type: unknown, param: string): ApiError {
  return new ApiError('unsupported_parameter', `${param}: content blocks of type '${String(type).slice(0, 40)}' are not supported by this server (text, tool_use, tool_result and thinking are)`, {
    param,
  });
}

const TEXT_ONLY = new Set(['text']);

/** A tool_result's content (string or text blocks) as the text the template shows the model. */
function toolResultText(v: unknown, param: string): string {
  if (!present(v)) return '';
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) throw bad(param, `${param} must be a string or an array of text blocks`);
  return textOfBlocks(v, param, TEXT_ONLY);
}

function parseSystem(v: unknown): string | null {
  if (!present(v)) return null;
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) throw bad('system', "'system' must be a string or an array of text blocks");
  return textOfBlocks(v, 'system', TEXT_ONLY);
}

/** One Anthropic message → one or more internal messages (tool results become `tool` messages). */
function convertMessage(m: unknown, i: number): ChatMessage[] {
  const p = `messages[${i}]`;
  if (!isObj(m)) throw bad(p, `${p} must be an object with 'role' and 'content'`);
  const role = m.role;
  if (role !== 'user' && role !== 'assistant' && role !== 'system') throw bad(`${p}.role`, `${p}.role must be 'user' or 'assistant'`);
  const content = m.content;
  if (typeof content === 'string') return [{ role, content: wellFormed(content) }];
  if (!Array.isArray(content)) throw bad(`${p}.content`, `${p}.content must be a string or an array of content blocks`);
  if (role === 'system') return [{ role, content: wellFormed(textOfBlocks(content, `${p}.content`, TEXT_ONLY)) }];

  if (role === 'assistant') {
    let text = '';
    let reasoning = '';
    const calls: ToolCall[] = [];
    content.forEach((b, j) => {
      const bp = `${p}.content[${j}]`;
      if (!isObj(b) || typeof b.type !== 'string') throw bad(bp, `${bp} must be a content block with a 'type'`);
      if (b.type === 'text') {
        if (typeof b.text !== 'string') throw bad(bp, `${bp}.text must be a string`);
        text += b.text;
      } else if (b.type === 'tool_use') {
        if (typeof b.id !== 'string' || typeof b.name !== 'string') throw bad(bp, `${bp} needs string 'id' and 'name'`);
        if (present(b.input) && !isObj(b.input)) throw bad(bp, `${bp}.input must be an object`);
        calls.push({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } });
      } else if (b.type === 'thinking') {
        if (typeof b.thinking !== 'string') throw bad(bp, `${bp}.thinking must be a string`);
        reasoning += b.thinking;
      } else if (b.type === 'redacted_thinking') {
        // Encrypted by another provider: nothing a local model can read.
      } else {
        throw unsupportedBlock(b.type, bp);
      }
    });
    const msg: ChatMessage = { role: 'assistant', content: wellFormed(text) };
    if (calls.length > 0) msg.tool_calls = calls;
    // Templates with a thinking section (Qwen3) show it for turns after the last user message.
    if (reasoning) msg.reasoning_content = wellFormed(reasoning);
    return [msg];
  }

  // user: tool_result blocks become tool messages in place; text between them a user message.
  const out: ChatMessage[] = [];
  let text: string | null = null;
  const flushText = () => {
    if (text !== null) out.push({ role: 'user', content: wellFormed(text) });
    text = null;
  };
  content.forEach((b, j) => {
    const bp = `${p}.content[${j}]`;
    if (!isObj(b) || typeof b.type !== 'string') throw bad(bp, `${bp} must be a content block with a 'type'`);
    if (b.type === 'text') {
      if (typeof b.text !== 'string') throw bad(bp, `${bp}.text must be a string`);
      text = text === null ? b.text : `${text}\n${b.text}`;
    } else if (b.type === 'tool_result') {
      if (typeof b.tool_use_id !== 'string') throw bad(bp, `${bp}.tool_use_id must be a string`);
      if (present(b.is_error) && typeof b.is_error !== 'boolean') throw bad(bp, `${bp}.is_error must be a boolean`);
      flushText();
      out.push({ role: 'tool', tool_call_id: b.tool_use_id, content: wellFormed(toolResultText(b.content, `${bp}.content`)) });
    } else {
      throw unsupportedBlock(b.type, bp);
    }
  });
  flushText();
  if (out.length === 0) out.push({ role: 'user', content: '' });
  return out;
}

function parseMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v)) throw bad('messages', "'messages' must be an array of messages");
  if (v.length === 0) throw bad('messages', "'messages' must contain at least one message");
  return v.flatMap((m, i) => convertMessage(m, i));
}

function parseTools(v: unknown): ToolDefinition[] | null {
  if (!present(v)) return null;
  if (!Array.isArray(v)) throw bad('tools', "'tools' must be an array");
  if (v.length > 128) throw bad('tools', "'tools' accepts at most 128 tools");
  const names = new Set<string>();
  const tools = v.map((t, i): ToolDefinition => {
    const p = `tools[${i}]`;
    if (!isObj(t)) throw bad(p, `${p} must be an object with 'name' and 'input_schema'`);
    if (present(t.type) && t.type !== 'custom') {
      throw new ApiError('unsupported_parameter', `${p}: server tools ('${String(t.type).slice(0, 40)}') are not supported; define a custom tool with 'input_schema'`, {
        param: `${p}.type`,
      });
    }
    if (typeof t.name !== 'string' || !TOOL_NAME_RE.test(t.name)) throw bad(`${p}.name`, `${p}.name must be 1-128 characters of a-z, A-Z, 0-9, _ and -`);
    if (names.has(t.name)) throw bad(`${p}.name`, `${p}.name '${t.name}' is used by more than one tool`);
    names.add(t.name);
    if (!isObj(t.input_schema)) throw bad(`${p}.input_schema`, `${p}.input_schema must be a JSON Schema object`);
    if (present(t.input_schema.type) && t.input_schema.type !== 'object') throw bad(`${p}.input_schema`, `${p}.input_schema must have type 'object'`);
    if (present(t.description) && typeof t.description !== 'string') throw bad(`${p}.description`, `${p}.description must be a string`);
    const fn: ToolDefinition['function'] = { name: t.name, parameters: t.input_schema };
    if (typeof t.description === 'string') fn.description = t.description;
    return { type: 'function', function: fn };
  });
  return tools.length > 0 ? tools : null;
}

function parseToolChoice(v: unknown, tools: ToolDefinition[] | null): { tools: ToolDefinition[] | null; toolChoice: ToolChoice } {
  if (!present(v)) return { tools, toolChoice: tools ? 'auto' : 'none' };
  if (!isObj(v) || typeof v.type !== 'string') throw bad('tool_choice', "'tool_choice' must be an object with a 'type'");
  if (present(v.disable_parallel_tool_use) && typeof v.disable_parallel_tool_use !== 'boolean') {
    throw bad('tool_choice', "'tool_choice.disable_parallel_tool_use' must be a boolean");
  }
  switch (v.type) {
    case 'none':
      return { tools: null, toolChoice: 'none' };
    case 'auto':
      return { tools, toolChoice: tools ? 'auto' : 'none' };
    case 'any':
    case 'tool': {
      if (!tools) throw bad('tool_choice', `'tool_choice' of type '${v.type}' requires 'tools'`);
      let chosen = tools;
      let toolChoice: ToolChoice = 'required';
      if (v.type === 'tool') {
        if (typeof v.name !== 'string') throw bad('tool_choice', "'tool_choice.name' must be a string");
        const found = tools.find((t) => t.function.name === v.name);
        if (!found) throw bad('tool_choice', "'tool_choice.name' names a tool that is not in 'tools'");
        chosen = [found];
        toolChoice = { name: found.function.name };
      }
      // Forced calls are enforced by constrained decoding: their input schemas must compile.
      chosen.forEach((t) => {
        const i = tools.indexOf(t);
        checkSchema(t.function.parameters, `tools[${i}].input_schema`, `tools[${i}].input_schema`);
      });
      return { tools: chosen, toolChoice };
    }
    default:
      throw bad('tool_choice', "'tool_choice.type' must be 'auto', 'any', 'tool' or 'none'");
  }
}

function num(body: Obj, key: string, min: number, max: number, int = false): number | undefined {
  const v = body[key];
  if (!present(v)) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (int && !Number.isInteger(v))) {
    throw bad(key, `'${key}' must be ${int ? 'an integer' : 'a number'} between ${min} and ${max}`);
  }
  return v;
}

function parseStopSequences(v: unknown, maxLen: number): string[] {
  if (!present(v)) return [];
  if (!Array.isArray(v)) throw bad('stop_sequences', "'stop_sequences' must be an array of strings");
  if (v.length > MAX_STOP_SEQUENCES) throw bad('stop_sequences', `'stop_sequences' accepts at most ${MAX_STOP_SEQUENCES} strings`);
  return v.map((s) => {
    if (typeof s !== 'string' || s.length === 0 || s.length > maxLen) {
      throw bad('stop_sequences', `'stop_sequences' entries must be non-empty strings of at most ${maxLen} characters`);
    }
    return wellFormed(s);
  });
}

function parseThinking(v: unknown): { on: boolean; omitted: boolean } {
  if (!present(v)) return { on: false, omitted: false };
  if (!isObj(v) || typeof v.type !== 'string') throw bad('thinking', "'thinking' must be an object with a 'type'");
  if (v.type === 'disabled') return { on: false, omitted: false };
  if (v.type !== 'enabled' && v.type !== 'adaptive' && v.type !== 'between_tools') {
    throw bad('thinking', "'thinking.type' must be 'enabled', 'adaptive', 'between_tools' or 'disabled'");
  }
  if (v.type === 'enabled' && (typeof v.budget_tokens !== 'number' || !Number.isInteger(v.budget_tokens) || v.budget_tokens < 1)) {
    throw bad('thinking', "'thinking.budget_tokens' must be a positive integer");
  }
  if (present(v.display) && v.display !== 'summarized' && v.display !== 'omitted') {
    throw bad('thinking', "'thinking.display' must be 'summarized' or 'omitted'");
  }
  return { on: true, omitted: v.display === 'omitted' };
}

/** `output_config.format: {type: 'json_schema', schema}` → the JSON constraint (same engine as OpenAI's response_format). */
function parseOutputFormat(v: unknown): ChatRequest['constraint'] {
  if (!present(v)) return null;
  if (!isObj(v)) throw bad('output_config', "'output_config' must be an object");
  const f = v.format;
  if (!present(f)) return null;
  if (!isObj(f) || f.type !== 'json_schema' || !isObj(f.schema)) {
    throw bad('output_config.format', "'output_config.format' must be {type: 'json_schema', schema: {...}}");
  }
  checkSchema(f.schema, 'output_config.format', 'output_config.format.schema');
  return { schema: f.schema };
}

export interface AnthropicValidateOptions {
  maxStopLength: number;
  /** count_tokens has no max_tokens. */
  countOnly?: boolean;
}

export function validateAnthropicRequest(body: Obj, opts: AnthropicValidateOptions): AnthropicRequest {
  if (typeof body.model !== 'string' || body.model.length === 0) {
    throw new ApiError('missing_required_parameter', "'model' is required (the id of a model from GET /v1/models)", { param: 'model' });
  }
  let maxTokens: number | null = null;
  if (!opts.countOnly) {
    const mt = body.max_tokens;
    if (!present(mt)) throw new ApiError('missing_required_parameter', "'max_tokens' is required", { param: 'max_tokens' });
    if (typeof mt !== 'number' || !Number.isInteger(mt) || mt < 1) throw bad('max_tokens', "'max_tokens' must be a positive integer");
    maxTokens = mt;
  }
  const system = parseSystem(body.system);
  const messages = parseMessages(body.messages);
  if (system !== null) messages.unshift({ role: 'system', content: wellFormed(system) });
  const offered = parseTools(body.tools);
  const { tools, toolChoice } = parseToolChoice(body.tool_choice, offered);
  const stream = body.stream === undefined || body.stream === null ? false : body.stream;
  if (typeof stream !== 'boolean') throw bad('stream', "'stream' must be a boolean");
  if (present(body.metadata) && !isObj(body.metadata)) throw bad('metadata', "'metadata' must be an object");
  const thinking = parseThinking(body.thinking);
  if (thinking.on && (toolChoice === 'required' || typeof toolChoice === 'object')) {
    // As Anthropic: a forced call leaves the model no room to think first.
    throw bad('thinking', "Thinking may not be enabled when 'tool_choice' forces tool use ('any' or 'tool')");
  }
  const constraint = parseOutputFormat(body.output_config);
  // Anthropic's ranges: temperature 0..1 (default 1), top_p (0..1], top_k >= 0.
  const temperature = num(body, 'temperature', 0, 1) ?? 1;
  const topP = num(body, 'top_p', 0, 1) ?? 1;
  if (topP === 0) throw bad('top_p', "'top_p' must be greater than 0");
  const topK = num(body, 'top_k', 0, 1_000_000, true) ?? 0;
  const stop = parseStopSequences(body.stop_sequences, opts.maxStopLength);
  // Thinking off (absent or disabled): a template with a thinking switch renders its non-thinking
  // prompt. On: the template's default (Qwen3 thinks by default).
  const templateKwargs: Record<string, unknown> = { enable_thinking: thinking.on };
  const chat: ChatRequest = {
    kind: 'chat',
    model: body.model,
    stream,
    includeUsage: true,
    maxTokens,
    sampling: { temperature, topP, topK, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, seed: undefined, stop },
    constraint,
    logprobs: null,
    messages,
    tools,
    toolChoice,
    templateKwargs,
    splitReasoning: true,
  };
  return { chat, thinking: thinking.on, thinkingOmitted: thinking.omitted };
}
