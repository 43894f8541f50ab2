// Internal generation events → Ollama's `/api/chat` and `/api/generate` lines (NDJSON when
// streaming) and their non-stream bodies, after the `ollama` package's ChatResponse /
// GenerateResponse and docs/api.md: content chunks `{model, created_at, message: {role, content},
// done: false}` (generate: `response`), reasoning in `thinking`, tool calls as whole calls with
// object arguments in `message.tool_calls` (Ollama sends a call once it is complete, never argument
// fragments), then a final `done: true` line with `done_reason` and the counts and durations (ns).
import type { ApiError } from '../../common/errors.ts';
import type { OutputDone, OutputEvent } from '../output-events.ts';

type Obj = Record<string, unknown>;

export interface OllamaToolCall {
  id: string;
  function: { index: number; name: string; arguments: Obj };
}

const NS_PER_MS = 1_000_000;

export class OllamaEncoder {
  private content = '';
  private thinking = '';
  private readonly calls: OllamaToolCall[] = [];
  private pending: { id: string; index: number; name: string; args: string } | null = null;

  constructor(
    private readonly model: string,
    private readonly kind: 'chat' | 'generate',
  ) {}

  private line(fields: { content?: string; thinking?: string; tool_calls?: OllamaToolCall[] }, done: boolean): Obj {
    const base: Obj = { model: this.model, created_at: new Date().toISOString() };
    if (this.kind === 'chat') {
      const message: Obj = { role: 'assistant', content: fields.content ?? '' };
      if (fields.thinking) message.thinking = fields.thinking;
      if (fields.tool_calls && fields.tool_calls.length > 0) message.tool_calls = fields.tool_calls;
      return { ...base, message, done };
    }
    const out: Obj = { ...base, response: fields.content ?? '' };
    if (fields.thinking) out.thinking = fields.thinking;
    out.done = done;
    return out;
  }

  /** Completes the call being collected; arguments that are not a JSON object stay text (content). */
  private closeCall(): Obj[] {
    const p = this.pending;
    if (!p) return [];
    this.pending = null;
    let args: unknown;
    try {
      args = JSON.parse(p.args === '' ? '{}' : p.args);
    } catch {
      args = undefined;
    }
    if (typeof args !== 'object' || args === null || Array.isArray(args)) {
      // A call cut short (token limit) is not a call: hand its text back as content, as Ollama does.
      const text = p.args;
      this.content += text;
      return text ? [this.line({ content: text }, false)] : [];
    }
    const call: OllamaToolCall = { id: p.id, function: { index: p.index, name: p.name, arguments: args as Obj } };
    this.calls.push(call);
    return [this.line({ tool_calls: [call] }, false)];
  }

  /** Streaming lines for one event (tool calls come out once complete). */
  push(ev: OutputEvent): Obj[] {
    if (ev.type === 'tool_call') {
      const out = this.closeCall();
      this.pending = { id: ev.id, index: ev.index, name: ev.name, args: '' };
      return out;
    }
    if (ev.type === 'tool_call_arguments') {
      if (this.pending && this.pending.index === ev.index) this.pending.args += ev.argumentsDelta;
      return [];
    }
    const out = this.closeCall();
    if (ev.text === '') return out;
    if (ev.type === 'content') {
      this.content += ev.text;
      out.push(this.line({ content: ev.text }, false));
    } else {
      this.thinking += ev.text;
      out.push(this.line({ thinking: ev.text }, false));
    }
    return out;
  }

  private stats(done: OutputDone): Obj {
    return {
      // Ollama says "stop" for answers with tool calls too.
      done_reason: done.finishReason === 'length' ? 'length' : 'stop',
      total_duration: Math.round(done.totalMs * NS_PER_MS),
      load_duration: 0,
      prompt_eval_count: done.promptTokens,
      prompt_eval_duration: Math.round(done.prefillMs * NS_PER_MS),
      eval_count: done.completionTokens,
      eval_duration: Math.round(done.decodeMs * NS_PER_MS),
    };
  }

  /** The last streamed lines: a pending call, then `done: true` with the stats. */
  finish(done: OutputDone): Obj[] {
    const out = this.closeCall();
    out.push({ ...this.line({}, true), ...this.stats(done) });
    return out;
  }

  /** The whole answer in one object (`stream: false`); push() every event first. */
  body(done: OutputDone): Obj {
    this.closeCall();
    return { ...this.line({ content: this.content, thinking: this.thinking, tool_calls: this.calls }, true), ...this.stats(done) };
  }
}

/** Ollama's "load the model" answer to an empty `messages` / `prompt`. */
export function ollamaLoadResponse(model: string, kind: 'chat' | 'generate'): Obj {
  const base = { model, created_at: new Date().toISOString() };
  return kind === 'chat' ? { ...base, message: { role: 'assistant', content: '' }, done_reason: 'load', done: true } : { ...base, response: '', done_reason: 'load', done: true };
}

/** Ollama's error shape: `{"error": "<message>"}` (the status code carries the rest). */
export function ollamaErrorBody(err: ApiError): { error: string } {
  return { error: err.message };
}
