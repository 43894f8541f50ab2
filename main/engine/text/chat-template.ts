// Chat templates from tokenizer_config.json (or chat_template.jinja), rendered with
// @huggingface/jinja: an interpreter, never eval, and byte-identical to Python/HF on the real Qwen3
// template (engine-findings §4). This file turns OpenAI-style messages into what HF templates
// expect (the same preprocessing vLLM does) and picks the template variant.
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { ensureJinjaPythonCompat } from './jinja-compat.ts';
import type { ChatMessage, ToolCallFormat, ToolDefinition } from './types.ts';

ensureJinjaPythonCompat();

export class ChatTemplateError extends Error {
  readonly code = 'chat_template_error' as const;
  /**
   * raised: the template called raise_exception(msg) (message is the template's text: a user error, 400);
   * render: the template failed on these messages (400); parse: the template itself is broken.
   */
  readonly kind: 'raised' | 'render' | 'parse';
  constructor(kind: ChatTemplateError['kind'], message: string) {
    super(message);
    this.name = 'ChatTemplateError';
    this.kind = kind;
  }
}

/**
 * Used when a model folder has no chat template: ChatML (what Qwen/Hermes/most fine-tunes use)
 * with Hermes-style tool instructions, so tools still work with the `hermes` parser.
 */
export const FALLBACK_CHATML_TEMPLATE = `{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
{%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}
{{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'tool' %}
{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
{%- else %}
{{- '<|im_start|>' + message.role + '\\n' + message.content }}
{%- if message.tool_calls %}{%- for tc in message.tool_calls %}
{%- if message.content or not loop.first %}{{- '\\n' }}{%- endif %}
{{- '<tool_call>\\n{"name": "' + tc.function.name + '", "arguments": ' }}
{%- if tc.function.arguments is string %}{{- tc.function.arguments }}{%- else %}{{- tc.function.arguments | tojson }}{%- endif %}
{{- '}\\n</tool_call>' }}
{%- endfor %}{%- endif %}
{{- '<|im_end|>\\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}`;

/** The template sources a model folder offers. */
export interface TemplateSources {
  /** Contents of chat_template.jinja (takes precedence, as in transformers). */
  jinjaFile?: string | null;
  /** tokenizer_config.json `chat_template`: a string or a list of `{name, template}`. */
  configValue?: unknown;
}

export interface RenderChatOptions {
  tools?: ToolDefinition[];
  /** Default true: end the prompt with the assistant header so the model answers. */
  addGenerationPrompt?: boolean;
  /** Extra template variables, e.g. `{ enable_thinking: false }`. */
  templateKwargs?: Record<string, unknown>;
}

export interface SpecialTokenVars {
  bos_token?: string | null;
  eos_token?: string | null;
  pad_token?: string | null;
  unk_token?: string | null;
}

/** Variables templateKwargs may not set (the request's own data and our globals). */
const RESERVED_VARS = new Set([
  'messages', 'tools', 'add_generation_prompt', 'raise_exception', 'strftime_now', 'range',
  'true', 'false', 'none', 'True', 'False', 'None',
]);

export class ChatTemplate {
  /** Named compiled templates; `default` always exists. */
  private readonly templates = new Map<string, Template>();
  /** Every template source, for format detection and fingerprinting. */
  readonly sourceText: string;
  readonly isFallback: boolean;

  constructor(sources: TemplateSources) {
    const named = new Map<string, string>();
    if (typeof sources.jinjaFile === 'string' && sources.jinjaFile.trim() !== '') {
      named.set('default', sources.jinjaFile);
    } else if (typeof sources.configValue === 'string' && sources.configValue.trim() !== '') {
      named.set('default', sources.configValue);
    } else if (Array.isArray(sources.configValue)) {
      for (const entry of sources.configValue) {
        const e = entry as { name?: unknown; template?: unknown };
        if (typeof e?.name === 'string' && typeof e.template === 'string') named.set(e.name, e.template);
      }
      if (named.size > 0 && !named.has('default')) {
        // HF refuses to guess here; a first entry is a better answer than no chat at all.
        const first = named.values().next().value as string;
        named.set('default', first);
      }
    }
    this.isFallback = named.size === 0;
    if (this.isFallback) named.set('default', FALLBACK_CHATML_TEMPLATE);
    for (const [name, src] of named) {
      try {
        this.templates.set(name, new Template(src));
      } catch (err) {
        throw new ChatTemplateError('parse', `chat template "${name}" could not be parsed: ${messageOf(err)}`);
      }
    }
    this.sourceText = [...named.entries()].map(([n, s]) => `${n}\u0000${s}`).join('\u0000');
  }

  /** Renders the prompt text. Throws ChatTemplateError only. */
  render(messages: ChatMessage[], opts: RenderChatOptions, specials: SpecialTokenVars, format: ToolCallFormat): string {
    const tools = Array.isArray(opts.tools) && opts.tools.length > 0 ? opts.tools : undefined;
    const template = (tools && this.templates.get('tool_use')) || this.templates.get('default')!;
    const vars: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(specials)) if (typeof v === 'string') vars[k] = v;
    for (const [k, v] of Object.entries(opts.templateKwargs ?? {})) {
      if (!RESERVED_VARS.has(k) && v !== undefined) vars[k] = v;
    }
    vars.messages = prepareMessages(messages, format);
    if (tools) vars.tools = cloneJson(tools, 'tools');
    vars.add_generation_prompt = opts.addGenerationPrompt ?? true;
    try {
      const out = renderWithGlobals(template, vars);
      if (typeof out !== 'string') throw new ChatTemplateError('render', 'chat template did not produce text');
      return out;
    } catch (err) {
      if (err instanceof ChatTemplateError) throw err;
      throw new ChatTemplateError('render', `chat template failed on these messages: ${messageOf(err)}`);
    }
  }
}

/**
 * Template.render() with our own globals: the library's built-in raise_exception throws a plain
 * Error we could not tell apart from a runtime failure, and it cannot be overridden through
 * render() ("Variable already declared"). strftime_now is Python's C-locale behaviour (English
 * month names), not the host locale.
 */
function renderWithGlobals(template: Template, vars: Record<string, unknown>): unknown {
  const env = new Environment();
  for (const [k, v] of [['false', false], ['true', true], ['none', null], ['False', false], ['True', true], ['None', null]] as const) {
    env.set(k, v);
  }
  env.set('range', jinjaRange);
  env.set('strftime_now', (format: unknown) => strftime(new Date(), typeof format === 'string' ? format : ''));
  env.set('raise_exception', (message: unknown) => {
    throw new ChatTemplateError('raised', typeof message === 'string' && message ? message : 'the chat template rejected the conversation');
  });
  for (const [k, v] of Object.entries(vars)) env.set(k, v);
  return new Interpreter(env).run(template.parsed).value;
}

function jinjaRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (!Number.isInteger(start) || !Number.isInteger(stop) || !Number.isInteger(step) || step === 0) {
    throw new Error('range() needs integer arguments and a non-zero step');
  }
  if (Math.abs((stop - start) / step) > 1_000_000) throw new Error('range() is too large');
  const out: number[] = [];
  if (step > 0) for (let i = start; i < stop; i += step) out.push(i);
  else for (let i = start; i > stop; i += step) out.push(i);
  return out;
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Python strftime for the directives chat templates use (Llama 3.2: "%d %b %Y"), C locale. */
export function strftime(date: Date, format: string): string {
  const p2 = (n: number) => String(n).padStart(2, '0');
  return format.replace(/%[YymdbBHMSaAjp%]/g, (tok) => {
    switch (tok) {
      case '%Y': return String(date.getFullYear());
      case '%y': return p2(date.getFullYear() % 100);
      case '%m': return p2(date.getMonth() + 1);
      case '%d': return p2(date.getDate());
      case '%b': return MONTHS[date.getMonth()].slice(0, 3);
      case '%B': return MONTHS[date.getMonth()];
      case '%H': return p2(date.getHours());
      case '%M': return p2(date.getMinutes());
      case '%S': return p2(date.getSeconds());
      case '%a': return DAYS[date.getDay()].slice(0, 3);
      case '%A': return DAYS[date.getDay()];
      case '%j': {
        const start = new Date(date.getFullYear(), 0, 1);
        return String(Math.floor((date.getTime() - start.getTime()) / 86_400_000) + 1).padStart(3, '0');
      }
      case '%p': return date.getHours() < 12 ? 'AM' : 'PM';
      default: return '%';
    }
  });
}

/**
 * OpenAI messages → the shape HF templates expect: developer→system, text parts joined with
 * "\n" (as vLLM does), null content → "" (templates do `'x' in message.content`), and assistant
 * tool-call arguments parsed from JSON text into objects (templates `tojson` them).
 */
export function prepareMessages(messages: ChatMessage[], format: ToolCallFormat): Record<string, unknown>[] {
  if (!Array.isArray(messages)) throw new ChatTemplateError('render', 'messages must be an array');
  if (messages.length === 0) throw new ChatTemplateError('render', 'messages must not be empty');
  return messages.map((m, i) => {
    if (!m || typeof m !== 'object') throw new ChatTemplateError('render', `messages[${i}] must be an object`);
    const role = m.role === 'developer' ? 'system' : m.role;
    if (role !== 'system' && role !== 'user' && role !== 'assistant' && role !== 'tool') {
      throw new ChatTemplateError('render', `messages[${i}].role must be one of system, developer, user, assistant, tool`);
    }
    const out: Record<string, unknown> = { role, content: contentText(m.content, i) };
    if (typeof m.name === 'string') out.name = m.name;
    if (role === 'tool' && typeof m.tool_call_id === 'string') {
      out.tool_call_id = format === 'mistral' ? mistralToolCallId(m.tool_call_id) : m.tool_call_id;
    }
    if (role === 'assistant' && typeof m.reasoning_content === 'string') out.reasoning_content = m.reasoning_content;
    if (role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
      out.tool_calls = m.tool_calls.map((tc, j) => {
        const fn = tc?.function;
        if (!fn || typeof fn.name !== 'string') {
          throw new ChatTemplateError('render', `messages[${i}].tool_calls[${j}].function.name must be a string`);
        }
        const id = typeof tc.id === 'string' ? tc.id : `call_${i}_${j}`;
        return {
          id: format === 'mistral' ? mistralToolCallId(id) : id,
          type: 'function',
          function: { name: fn.name, arguments: parseArguments(fn.arguments) },
        };
      });
    }
    return out;
  });
}

function contentText(content: unknown, i: number): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part, j) => {
        const p = part as { type?: unknown; text?: unknown };
        if (p && p.type === 'text' && typeof p.text === 'string') return p.text;
        throw new ChatTemplateError('render', `messages[${i}].content[${j}]: only text parts are supported`);
      })
      .join('\n');
  }
  throw new ChatTemplateError('render', `messages[${i}].content must be a string, an array of text parts, or null`);
}

/** OpenAI sends arguments as JSON text; HF templates expect the object (kept as text if not JSON). */
function parseArguments(args: unknown): unknown {
  if (typeof args !== 'string') return args && typeof args === 'object' ? cloneJson(args, 'arguments') : {};
  try {
    const v = JSON.parse(args) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? v : args;
  } catch {
    return args;
  }
}

/** Mistral templates raise unless tool call ids are exactly 9 alphanumerics (vLLM maps them the same way). */
export function mistralToolCallId(id: string): string {
  const alnum = id.replace(/[^A-Za-z0-9]/g, '');
  return alnum.length >= 9 ? alnum.slice(-9) : alnum.padStart(9, '0');
}

function cloneJson(v: unknown, what: string): unknown {
  try {
    return JSON.parse(JSON.stringify(v)) as unknown;
  } catch {
    throw new ChatTemplateError('render', `${what} must be plain JSON`);
  }
}

function messageOf(err: unknown): string {
  const msg = err instanceof Error ? err.message : typeof err === 'string' ? err : 'unknown error';
  return msg.length > 300 ? `${msg.slice(0, 300)}…` : msg;
}
