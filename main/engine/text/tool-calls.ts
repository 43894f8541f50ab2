// Tool calls in generated text, for the formats of the supported families (see ToolCallFormat).
// One streaming parser per format; the non-streaming parseToolCalls() feeds the whole text to the
// same parser, so streamed and non-streamed results are the same by construction.
//
// A call is reported once its markup is complete and its JSON parses: first a `tool_call` event
// (OpenAI's first fragment: index, id, name), then one `tool_call_arguments` with the whole
// arguments JSON. Buffering a call until it is complete is what lets malformed JSON fall back to
// plain content (OpenAI clients cannot take back an emitted tool call); calls are short, so the
// added latency is a few tokens.
import { randomBytes } from 'node:crypto';
import type { ToolCall, ToolCallFormat, ToolParserEvent } from './types.ts';

export interface ToolCallStreamParser {
  /** Feeds a text delta; returns the events it completes (content is coalesced). */
  push(text: string): ToolParserEvent[];
  /** End of generation: unfinished markup is parsed if complete JSON, else returned as content. */
  flush(): ToolParserEvent[];
  /** Calls completed so far, in order (OpenAI shape; `arguments` is JSON text). */
  readonly toolCalls: ToolCall[];
}

export interface ParsedToolCalls {
  /** Text outside tool calls; null when there are tool calls and only whitespace around them. */
  content: string | null;
  toolCalls: ToolCall[];
}

export interface ToolCallParserOptions {
  /** Id factory (tests); default `call_` + 24 random alphanumerics. */
  newId?: () => string;
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** `call_` + 24 random alphanumerics (~143 bits): unique without coordination. */
export function newToolCallId(): string {
  const bytes = randomBytes(24);
  let s = 'call_';
  // 248 = 4 × 62: rejection-free enough; the tiny modulo bias is irrelevant for ids.
  for (const b of bytes) s += ALNUM[b % 62];
  return s;
}

/** The tool-call format a chat template teaches the model, from the template text itself. */
export function detectToolCallFormat(templateText: string | null | undefined): ToolCallFormat {
  if (!templateText) return 'none';
  if (templateText.includes('[TOOL_CALLS]')) return 'mistral';
  if (templateText.includes('<tool_call>')) return 'hermes';
  if (templateText.includes('<|python_tag|>') || (templateText.includes('ipython') && templateText.includes('"parameters"'))) {
    return 'llama3_json';
  }
  return 'none';
}

export function createToolCallParser(format: ToolCallFormat, opts: ToolCallParserOptions = {}): ToolCallStreamParser {
  const newId = opts.newId ?? newToolCallId;
  switch (format) {
    case 'hermes':
      return new HermesParser(newId);
    case 'llama3_json':
      return new Llama3JsonParser(newId);
    case 'mistral':
      return new MistralParser(newId);
    default:
      return new PassthroughParser();
  }
}

/** Non-streaming: the same result as streaming the whole text through createToolCallParser(format). */
export function parseToolCalls(text: string, format: ToolCallFormat, opts: ToolCallParserOptions = {}): ParsedToolCalls {
  const parser = createToolCallParser(format, opts);
  const events = [...parser.push(text), ...parser.flush()];
  const content = events.map((e) => (e.type === 'content' ? e.text : '')).join('');
  const toolCalls = parser.toolCalls;
  return { content: toolCalls.length > 0 && content.trim() === '' ? null : content, toolCalls };
}

// ---------------------------------------------------------------------------------------------

abstract class BaseParser implements ToolCallStreamParser {
  readonly toolCalls: ToolCall[] = [];
  private out: ToolParserEvent[] = [];
  /** Whitespace held back: dropped if a tool call follows, emitted if more content follows. */
  private pendingWs = '';

  constructor(private readonly newId: () => string) {}

  push(text: string): ToolParserEvent[] {
    if (typeof text === 'string' && text.length > 0) this.consume(text, false);
    return this.take();
  }

  flush(): ToolParserEvent[] {
    this.consume('', true);
    if (this.toolCalls.length === 0 && this.pendingWs) this.out.push({ type: 'content', text: this.pendingWs });
    this.pendingWs = '';
    return this.take();
  }

  protected abstract consume(text: string, final: boolean): void;

  protected content(text: string): void {
    if (!text) return;
    const trailing = /\s*$/.exec(text)![0];
    const body = text.slice(0, text.length - trailing.length);
    if (body) {
      const piece = this.pendingWs + body;
      const last = this.out[this.out.length - 1];
      if (last?.type === 'content') last.text += piece;
      else this.out.push({ type: 'content', text: piece });
      this.pendingWs = '';
    }
    this.pendingWs += trailing;
  }

  /** Reports a call; returns false (nothing emitted) if name/arguments are not a valid call. */
  protected call(name: unknown, args: unknown): boolean {
    const argsJson = argumentsJson(args);
    if (typeof name !== 'string' || name.trim() === '' || argsJson === null) return false;
    this.pendingWs = '';
    const index = this.toolCalls.length;
    const id = this.newId();
    this.toolCalls.push({ id, type: 'function', function: { name, arguments: argsJson } });
    this.out.push({ type: 'tool_call', index, id, name });
    this.out.push({ type: 'tool_call_arguments', index, argumentsDelta: argsJson });
    return true;
  }

  private take(): ToolParserEvent[] {
    const out = this.out;
    this.out = [];
    return out;
  }
}

class PassthroughParser implements ToolCallStreamParser {
  readonly toolCalls: ToolCall[] = [];
  push(text: string): ToolParserEvent[] {
    return text ? [{ type: 'content', text }] : [];
  }
  flush(): ToolParserEvent[] {
    return [];
  }
}

/** Qwen2.5 / Qwen3 / Hermes: `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`, possibly several. */
class HermesParser extends BaseParser {
  private static readonly OPEN = '<tool_call>';
  private static readonly CLOSE = '</tool_call>';
  private buf = '';
  private inCall = false;

  protected consume(text: string, final: boolean): void {
    const { OPEN, CLOSE } = HermesParser;
    this.buf += text;
    for (;;) {
      if (!this.inCall) {
        const i = this.buf.indexOf(OPEN);
        if (i !== -1) {
          this.content(this.buf.slice(0, i));
          this.buf = this.buf.slice(i + OPEN.length);
          this.inCall = true;
          continue;
        }
        const keep = final ? 0 : partialPrefixLength(this.buf, OPEN);
        this.content(this.buf.slice(0, this.buf.length - keep));
        this.buf = this.buf.slice(this.buf.length - keep);
        return;
      }
      const j = this.buf.indexOf(CLOSE);
      if (j !== -1) {
        const body = this.buf.slice(0, j);
        this.buf = this.buf.slice(j + CLOSE.length);
        this.inCall = false;
        if (!this.callFromObjectText(body)) this.content(OPEN + body + CLOSE);
        continue;
      }
      if (final) {
        // Generation ended inside the block (EOS/stop before the close tag): accept complete JSON.
        const body = this.buf;
        this.buf = '';
        this.inCall = false;
        if (!this.callFromObjectText(body)) this.content(OPEN + body);
      }
      return;
    }
  }

  private callFromObjectText(body: string): boolean {
    const obj = parseJsonObject(body.trim());
    if (!obj) return false;
    return this.call(obj.name, 'arguments' in obj ? obj.arguments : obj.parameters);
  }
}

/**
 * Llama 3.1+: the whole answer is `{"name": …, "parameters": {…}}` (optionally after
 * `<|python_tag|>`), several separated by `;`. Only an answer that *starts* that way is a call,
 * as in vLLM's llama3_json parser; anything else is content and passes straight through.
 */
class Llama3JsonParser extends BaseParser {
  private static readonly TAG = '<|python_tag|>';
  private mode: 'detect' | 'json' | 'content' = 'detect';
  /** Raw text not yet consumed by a call (what becomes content if parsing fails). */
  private raw = '';

  protected consume(text: string, final: boolean): void {
    const TAG = Llama3JsonParser.TAG;
    if (this.mode === 'content') {
      this.content(text);
      return;
    }
    this.raw += text;
    if (this.mode === 'detect') {
      const s = this.raw.trimStart();
      if (s === '' || (s.length < TAG.length && TAG.startsWith(s))) {
        if (final) this.fail();
        return;
      }
      if (s.startsWith(TAG) || s.startsWith('{')) this.mode = 'json';
      else return this.fail();
    }
    // mode json: consume complete objects from the front of `raw`.
    for (;;) {
      let s = this.raw.replace(/^\s+/, '');
      if (s.startsWith(TAG)) s = s.slice(TAG.length);
      s = s.replace(/^[\s;]+/, '');
      if (s === '') {
        if (final) this.raw = '';
        return;
      }
      if (s[0] !== '{') return this.fail();
      const end = jsonValueEnd(s, 0);
      if (end === -1) {
        if (final) this.fail();
        return;
      }
      const obj = parseJsonObject(s.slice(0, end));
      if (!obj || !this.call(obj.name, 'parameters' in obj ? obj.parameters : obj.arguments)) return this.fail();
      this.raw = s.slice(end);
    }
  }

  private fail(): void {
    this.mode = 'content';
    const raw = this.raw;
    this.raw = '';
    this.content(raw);
  }
}

/**
 * Mistral: `[TOOL_CALLS] [{"name": …, "arguments": {…}}, …]` (v0.3 tokenizer) or
 * `[TOOL_CALLS]name[ARGS]{…}` per call (newer tekken tokenizers; `[CALL_ID]id` is tolerated).
 */
class MistralParser extends BaseParser {
  private static readonly MARK = '[TOOL_CALLS]';
  private buf = '';
  private inCall = false;

  protected consume(text: string, final: boolean): void {
    const MARK = MistralParser.MARK;
    this.buf += text;
    for (;;) {
      if (!this.inCall) {
        const i = this.buf.indexOf(MARK);
        if (i !== -1) {
          this.content(this.buf.slice(0, i));
          this.buf = this.buf.slice(i + MARK.length);
          this.inCall = true;
          continue;
        }
        const keep = final ? 0 : partialPrefixLength(this.buf, MARK);
        this.content(this.buf.slice(0, this.buf.length - keep));
        this.buf = this.buf.slice(this.buf.length - keep);
        return;
      }
      const r = this.tryCall(this.buf, final);
      if (r === 'wait') return;
      this.inCall = false;
      if (r === 'fail') {
        this.content(MARK + this.buf);
        this.buf = '';
        return;
      }
      this.buf = this.buf.slice(r);
    }
  }

  /** Parses calls after a marker: consumed length, 'wait' for more text, or 'fail'. */
  private tryCall(buf: string, final: boolean): number | 'wait' | 'fail' {
    const lead = /^\s*/.exec(buf)![0].length;
    if (lead === buf.length) return final ? 'fail' : 'wait';
    if (buf[lead] === '[') {
      const end = jsonValueEnd(buf, lead);
      if (end === -1) return final ? 'fail' : 'wait';
      let arr: unknown;
      try {
        arr = JSON.parse(buf.slice(lead, end));
      } catch {
        return 'fail';
      }
      if (!Array.isArray(arr) || arr.length === 0) return 'fail';
      const calls = arr.map((c) => (c && typeof c === 'object' && !Array.isArray(c) ? (c as Record<string, unknown>) : null));
      // All or nothing: validate every element before emitting any.
      if (calls.some((c) => !c || typeof c.name !== 'string' || !c.name || argumentsJson(c.arguments ?? c.parameters ?? {}) === null)) return 'fail';
      for (const c of calls) this.call(c!.name, c!.arguments ?? c!.parameters ?? {});
      return end;
    }
    const argsAt = buf.indexOf('[ARGS]');
    if (argsAt === -1) {
      // Wait only while the text can still become `name[CALL_ID]id[ARGS]`; a name is short, no spaces.
      if (final || buf.length > 512 || !couldBecomeNameArgs(buf.slice(lead))) return 'fail';
      return 'wait';
    }
    const name = buf.slice(lead, argsAt).split('[CALL_ID]')[0]!.trim();
    if (!/^[A-Za-z0-9_.:-]+$/.test(name)) return 'fail';
    const after = argsAt + '[ARGS]'.length;
    const objAt = after + /^\s*/.exec(buf.slice(after))![0].length;
    if (objAt >= buf.length) return final ? 'fail' : 'wait';
    if (buf[objAt] !== '{') return 'fail';
    const end = jsonValueEnd(buf, objAt);
    if (end === -1) return final ? 'fail' : 'wait';
    const obj = parseJsonObject(buf.slice(objAt, end));
    if (!obj || !this.call(name, obj)) return 'fail';
    return end;
  }
}

// ---------------------------------------------------------------------------------------------

/** OpenAI `arguments`: JSON text of an object. Accepts an object, or a string holding one. */
function argumentsJson(args: unknown): string | null {
  if (args === undefined || args === null) return '{}';
  if (typeof args === 'string') {
    const obj = parseJsonObject(args.trim());
    return obj ? args.trim() : null;
  }
  if (typeof args === 'object' && !Array.isArray(args)) return JSON.stringify(args);
  return null;
}

function parseJsonObject(text: string): Record<string, unknown> | null {
  if (!text.startsWith('{')) return null;
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * End (exclusive) of the JSON object/array starting at `start`, by bracket matching that skips
 * strings and escapes; -1 if the text ends before the value closes.
 */
export function jsonValueEnd(s: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return i + 1;
      if (depth < 0) return -1;
    }
  }
  return -1;
}

function couldBecomeNameArgs(rest: string): boolean {
  const m = /^[A-Za-z0-9_.:-]+/.exec(rest);
  if (!m) return false;
  let r = rest.slice(m[0].length);
  if (r === '' || '[CALL_ID]'.startsWith(r) || '[ARGS]'.startsWith(r)) return true;
  if (!r.startsWith('[CALL_ID]')) return false;
  r = r.slice('[CALL_ID]'.length).replace(/^[A-Za-z0-9]*/, '');
  return r === '' || '[ARGS]'.startsWith(r);
}

/** Length of the longest suffix of `buf` that is a proper prefix of `marker`. */
function partialPrefixLength(buf: string, marker: string): number {
  for (let len = Math.min(marker.length - 1, buf.length); len > 0; len--) {
    if (marker.startsWith(buf.slice(buf.length - len))) return len;
  }
  return 0;
}
