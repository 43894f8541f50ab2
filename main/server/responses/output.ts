// Internal generation events → the Responses API: the stream events (with `sequence_number`) and
// the final Response object, built by ONE encoder so a streamed and a non-streamed response of the
// same generation are identical (the non-stream body is the encoder's final `response`).
//
// Event order (as OpenAI sends it, openai-node 6.x `ResponseStreamEvent`):
//   response.created → response.in_progress →
//   per output item: response.output_item.added →
//     message:   response.content_part.added → response.output_text.delta* → response.output_text.done → response.content_part.done
//     reasoning: response.content_part.added (reasoning_text) → response.reasoning_text.delta* → response.reasoning_text.done → response.content_part.done
//     function_call: response.function_call_arguments.delta* → response.function_call_arguments.done
//   → response.output_item.done
//   → response.completed (or response.incomplete when max_output_tokens cut it; error + response.failed on failure)
import { randomUUID } from 'node:crypto';
import type { ApiError } from '../../common/errors.ts';
import type { OutputDone, OutputEvent } from '../output-events.ts';

type Obj = Record<string, unknown>;

/** One SSE frame: `event: <type>` + `data: <json>` (the JSON carries the same `type`). */
export interface ResponsesFrame {
  event: string;
  data: Obj;
}

/** The fields a Response object echoes from its request (see request.ts `echo`). */
export interface ResponseBase {
  id: string;
  created_at: number;
  model: string;
  instructions: string | null;
  previous_response_id: string | null;
  store: boolean;
  echo: Obj;
}

export function newResponseId(): string {
  return `resp_${randomUUID().replace(/-/g, '')}`;
}

const itemId = (prefix: string) => `${prefix}_${randomUUID().replace(/-/g, '').slice(0, 24)}`;

interface OpenItem {
  kind: 'message' | 'reasoning' | 'function_call';
  index: number;
  item: Obj;
  text: string;
  /** function_call only: the tool-call parser's index. */
  callIndex?: number;
}

export class ResponsesEncoder {
  private seq = 0;
  private readonly output: Obj[] = [];
  private open: OpenItem | null = null;
  private status: 'in_progress' | 'completed' | 'incomplete' | 'failed' = 'in_progress';
  private usage: Obj | null = null;
  private error: Obj | null = null;
  private incomplete: Obj | null = null;
  private completedAt: number | null = null;

  constructor(private readonly base: ResponseBase) {}

  /** The Response object as it stands (the final one after finish()/fail()). */
  get response(): Obj {
    return {
      id: this.base.id,
      object: 'response',
      created_at: this.base.created_at,
      status: this.status,
      background: false,
      completed_at: this.completedAt,
      error: this.error,
      incomplete_details: this.incomplete,
      instructions: this.base.instructions,
      model: this.base.model,
      output: this.output.map((o) => structuredClone(o)),
      previous_response_id: this.base.previous_response_id,
      service_tier: 'default',
      store: this.base.store,
      top_logprobs: 0,
      truncation: 'disabled',
      usage: this.usage,
      ...this.base.echo,
    };
  }

  private frame(type: string, fields: Obj): ResponsesFrame {
    return { event: type, data: { type, sequence_number: this.seq++, ...fields } };
  }

  /** response.created + response.in_progress. */
  start(): ResponsesFrame[] {
    const r = this.response;
    return [this.frame('response.created', { response: r }), this.frame('response.in_progress', { response: r })];
  }

  private openItem(kind: OpenItem['kind'], callIndex?: number, name?: string, callId?: string): ResponsesFrame[] {
    const frames = this.closeOpen();
    let item: Obj;
    if (kind === 'message') item = { id: itemId('msg'), type: 'message', status: 'in_progress', content: [], role: 'assistant' };
    else if (kind === 'reasoning') item = { id: itemId('rs'), type: 'reasoning', summary: [], content: [], status: 'in_progress' };
    else item = { id: itemId('fc'), type: 'function_call', status: 'in_progress', arguments: '', call_id: callId, name };
    const index = this.output.length;
    this.output.push(item);
    this.open = { kind, index, item, text: '', callIndex };
    frames.push(this.frame('response.output_item.added', { output_index: index, item: structuredClone(item) }));
    if (kind === 'message') {
      frames.push(this.frame('response.content_part.added', { item_id: item.id, output_index: index, content_index: 0, part: { type: 'output_text', annotations: [], logprobs: [], text: '' } }));
    } else if (kind === 'reasoning') {
      frames.push(this.frame('response.content_part.added', { item_id: item.id, output_index: index, content_index: 0, part: { type: 'reasoning_text', text: '' } }));
    }
    return frames;
  }

  /** Ends the open item (its .done events); `status` is the item's final status. */
  private closeOpen(status: 'completed' | 'incomplete' = 'completed'): ResponsesFrame[] {
    const o = this.open;
    if (!o) return [];
    this.open = null;
    const frames: ResponsesFrame[] = [];
    const id = o.item.id;
    const at = { item_id: id, output_index: o.index };
    if (o.kind === 'message') {
      const part = { type: 'output_text', annotations: [], logprobs: [], text: o.text };
      frames.push(this.frame('response.output_text.done', { ...at, content_index: 0, text: o.text, logprobs: [] }));
      frames.push(this.frame('response.content_part.done', { ...at, content_index: 0, part }));
      o.item.content = [part];
    } else if (o.kind === 'reasoning') {
      const part = { type: 'reasoning_text', text: o.text };
      frames.push(this.frame('response.reasoning_text.done', { ...at, content_index: 0, text: o.text }));
      frames.push(this.frame('response.content_part.done', { ...at, content_index: 0, part }));
      o.item.content = [part];
    } else {
      frames.push(this.frame('response.function_call_arguments.done', { ...at, name: o.item.name, arguments: o.text }));
      o.item.arguments = o.text;
    }
    o.item.status = status;
    frames.push(this.frame('response.output_item.done', { output_index: o.index, item: structuredClone(o.item) }));
    return frames;
  }

  /** One generation event → its stream frames. */
  push(ev: OutputEvent): ResponsesFrame[] {
    const frames: ResponsesFrame[] = [];
    if (ev.type === 'content' || ev.type === 'reasoning') {
      if (ev.text === '') return frames;
      const kind = ev.type === 'content' ? 'message' : 'reasoning';
      // Whitespace between a reasoning block or a tool call and nothing else is not an answer.
      if (this.open?.kind !== kind) {
        if (kind === 'message' && ev.text.trim() === '' && this.open !== null) return frames;
        frames.push(...this.openItem(kind));
      }
      const o = this.open!;
      o.text += ev.text;
      const type = kind === 'message' ? 'response.output_text.delta' : 'response.reasoning_text.delta';
      const extra = kind === 'message' ? { logprobs: [] } : {};
      frames.push(this.frame(type, { item_id: o.item.id, output_index: o.index, content_index: 0, delta: ev.text, ...extra }));
      return frames;
    }
    if (ev.type === 'tool_call') {
      frames.push(...this.openItem('function_call', ev.index, ev.name, ev.id));
      return frames;
    }
    // tool_call_arguments: belongs to the open call (the parser never interleaves calls).
    const o = this.open;
    if (!o || o.kind !== 'function_call' || o.callIndex !== ev.index || ev.argumentsDelta === '') return frames;
    o.text += ev.argumentsDelta;
    frames.push(this.frame('response.function_call_arguments.delta', { item_id: o.item.id, output_index: o.index, delta: ev.argumentsDelta }));
    return frames;
  }

  /** Closes the open item and ends with response.completed (or response.incomplete when cut by the token limit). */
  finish(done: OutputDone): ResponsesFrame[] {
    const cut = done.finishReason === 'length';
    const frames = this.closeOpen(cut ? 'incomplete' : 'completed');
    this.status = cut ? 'incomplete' : 'completed';
    if (cut) this.incomplete = { reason: 'max_output_tokens' };
    this.completedAt = Math.floor(Date.now() / 1000);
    this.usage = {
      input_tokens: done.promptTokens,
      input_tokens_details: { cached_tokens: done.cachedTokens },
      output_tokens: done.completionTokens,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: done.promptTokens + done.completionTokens,
    };
    frames.push(this.frame(cut ? 'response.incomplete' : 'response.completed', { response: this.response }));
    return frames;
  }

  /** A failure after the stream started: an `error` event, then response.failed. */
  fail(err: ApiError): ResponsesFrame[] {
    const frames = this.closeOpen('incomplete');
    this.status = 'failed';
    this.error = { code: err.status >= 500 ? 'server_error' : 'invalid_prompt', message: err.message };
    frames.push(this.frame('error', { code: err.code, message: err.message, param: err.param }));
    frames.push(this.frame('response.failed', { response: this.response }));
    return frames;
  }
}

/** `output_text` as the SDKs compute it: the text of every output_text part, in order. */
export function outputText(response: Obj): string {
  let s = '';
  for (const item of (response.output as Obj[]) ?? []) {
    if (item.type !== 'message') continue;
    for (const c of (item.content as Obj[]) ?? []) if (c.type === 'output_text') s += c.text as string;
  }
  return s;
}

/** Serializes a frame the way OpenAI does: an `event:` line and a `data:` line. */
export function sseFrame(f: ResponsesFrame): string {
  return `event: ${f.event}\ndata: ${JSON.stringify(f.data)}\n\n`;
}
