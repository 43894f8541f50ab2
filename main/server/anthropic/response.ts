// The output side of /v1/messages: the shared output events (reasoning, text, tool calls; see
// ../output-split.ts) become Anthropic content blocks. One builder serves both modes: streaming
// returns the SSE frames in Anthropic's exact order —
//   message_start → (content_block_start → content_block_delta* → content_block_stop)* →
//   message_delta (stop_reason, stop_sequence, usage) → message_stop
// — and the non-stream message is the same blocks, accumulated.
import type { OutputEvent } from '../output-split.ts';

export interface SseFrame {
  event: string;
  data: Record<string, unknown>;
}

export type AnthropicStopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use';

/** Token counts of one generation (the engine's `done` event, or the prefill event's running numbers). */
export interface AnthropicUsageInput {
  promptTokens: number;
  /** Prompt tokens served from the prefix cache. */
  cachedTokens: number;
  completionTokens: number;
}

/**
 * Anthropic's usage: `input_tokens` excludes cached tokens (total prompt = input_tokens +
 * cache_read_input_tokens + cache_creation_input_tokens). Our prefix cache is automatic and writes
 * nothing a client pays for, so cache_creation_input_tokens is 0.
 */
export function anthropicUsage(u: AnthropicUsageInput) {
  const cached = Math.min(u.cachedTokens, u.promptTokens);
  return {
    input_tokens: u.promptTokens - cached,
    output_tokens: u.completionTokens,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: cached,
    cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
    server_tool_use: null,
    service_tier: 'standard',
  };
}

export interface EndInfo extends AnthropicUsageInput {
  /** The engine's reason: eos, stop_string, max_tokens. */
  stopReason: 'eos' | 'stop_string' | 'max_tokens' | 'cancelled';
  /** Which stop sequence matched (engine `done.stopString`). */
  stopString?: string | null;
}

type Block =
  | { type: 'text'; text: string }
  | { type: 'thinking'; thinking: string; signature: string }
  | { type: 'tool_use'; id: string; name: string; input: unknown; json: string };

export interface AnthropicMessageOptions {
  id: string;
  model: string;
  /** Show thinking blocks (the request asked for thinking); else reasoning is dropped. */
  showThinking: boolean;
  /** `display: 'omitted'`: thinking blocks carry no text. */
  thinkingOmitted?: boolean;
}

/** Anthropic ids look like `toolu_…`; our parser's are `call_…` (same random part). */
export const toAnthropicToolId = (id: string): string => (id.startsWith('call_') ? `toolu_${id.slice(5)}` : id);

export class AnthropicMessageBuilder {
  private readonly blocks: Block[] = [];
  /** Index of the block still open in the stream (-1: none). */
  private open = -1;
  /** Our tool-call index → block index. */
  private readonly toolBlocks = new Map<number, number>();
  private started = false;
  private stopReason: AnthropicStopReason | null = null;
  private stopSequence: string | null = null;
  private usage: ReturnType<typeof anthropicUsage> | null = null;

  constructor(private readonly opts: AnthropicMessageOptions) {}

  /** The message as message_start shows it (no content yet). */
  private envelope(content: unknown[], usage: ReturnType<typeof anthropicUsage>) {
    return {
      id: this.opts.id,
      type: 'message',
      role: 'assistant',
      model: this.opts.model,
      content,
      stop_reason: this.stopReason,
      stop_sequence: this.stopSequence,
      stop_details: null,
      container: null,
      usage,
    };
  }

  /** message_start (once); the usage so far: prompt known, output 0 (Anthropic sends 1). */
  start(u: Omit<AnthropicUsageInput, 'completionTokens'>): SseFrame[] {
    if (this.started) return [];
    this.started = true;
    return [{ event: 'message_start', data: { type: 'message_start', message: this.envelope([], anthropicUsage({ ...u, completionTokens: 0 })) } }];
  }

  get isStarted(): boolean {
    return this.started;
  }

  /** Anthropic's stop_reason once finished (for the request record). */
  get stopReasonName(): AnthropicStopReason | null {
    return this.stopReason;
  }

  /** Frames for a batch of output events (blocks open and close as the kind of output changes). */
  push(events: OutputEvent[]): SseFrame[] {
    const frames: SseFrame[] = [];
    for (const ev of events) {
      if (ev.type === 'reasoning') {
        if (!this.opts.showThinking || !ev.text) continue;
        const i = this.ensureOpen('thinking', frames);
        if (this.opts.thinkingOmitted) continue;
        (this.blocks[i] as Extract<Block, { type: 'thinking' }>).thinking += ev.text;
        frames.push(delta(i, { type: 'thinking_delta', thinking: ev.text }));
      } else if (ev.type === 'content') {
        if (!ev.text) continue;
        const i = this.ensureOpen('text', frames);
        (this.blocks[i] as Extract<Block, { type: 'text' }>).text += ev.text;
        frames.push(delta(i, { type: 'text_delta', text: ev.text }));
      } else if (ev.type === 'tool_call') {
        this.closeOpen(frames);
        const block: Block = { type: 'tool_use', id: toAnthropicToolId(ev.id), name: ev.name, input: {}, json: '' };
        this.blocks.push(block);
        this.open = this.blocks.length - 1;
        this.toolBlocks.set(ev.index, this.open);
        frames.push({
          event: 'content_block_start',
          data: { type: 'content_block_start', index: this.open, content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} } },
        });
      } else {
        const i = this.toolBlocks.get(ev.index);
        if (i === undefined) continue;
        (this.blocks[i] as Extract<Block, { type: 'tool_use' }>).json += ev.argumentsDelta;
        frames.push(delta(i, { type: 'input_json_delta', partial_json: ev.argumentsDelta }));
      }
    }
    return frames;
  }

  /** Closes the open block, then message_delta (stop reason + final usage) and message_stop. */
  finish(end: EndInfo): SseFrame[] {
    const frames: SseFrame[] = [];
    this.closeOpen(frames);
    this.stopReason = this.hasToolUse()
      ? 'tool_use'
      : end.stopReason === 'max_tokens'
        ? 'max_tokens'
        : end.stopReason === 'stop_string'
          ? 'stop_sequence'
          : 'end_turn';
    // A forced call cut by max_tokens is still reported as max_tokens (its input may be incomplete).
    if (end.stopReason === 'max_tokens') this.stopReason = 'max_tokens';
    this.stopSequence = this.stopReason === 'stop_sequence' ? (end.stopString ?? null) : null;
    this.usage = anthropicUsage(end);
    const { cache_creation: _c, server_tool_use: _s, service_tier: _t, ...deltaUsage } = this.usage;
    frames.push({
      event: 'message_delta',
      data: { type: 'message_delta', delta: { stop_reason: this.stopReason, stop_sequence: this.stopSequence, stop_details: null, container: null }, usage: deltaUsage },
    });
    frames.push({ event: 'message_stop', data: { type: 'message_stop' } });
    return frames;
  }

  /** The whole message (non-stream), after finish(). */
  message(): Record<string, unknown> {
    const content = this.blocks.map((b) => {
      if (b.type === 'text') return { type: 'text', text: b.text, citations: null };
      if (b.type === 'thinking') return { type: 'thinking', thinking: b.thinking, signature: b.signature };
      return { type: 'tool_use', id: b.id, name: b.name, input: parseInput(b.json) };
    });
    return this.envelope(content, this.usage ?? anthropicUsage({ promptTokens: 0, cachedTokens: 0, completionTokens: 0 }));
  }

  private hasToolUse(): boolean {
    return this.blocks.some((b) => b.type === 'tool_use');
  }

  private ensureOpen(kind: 'text' | 'thinking', frames: SseFrame[]): number {
    if (this.open >= 0 && this.blocks[this.open]!.type === kind) return this.open;
    this.closeOpen(frames);
    const block: Block = kind === 'text' ? { type: 'text', text: '' } : { type: 'thinking', thinking: '', signature: '' };
    this.blocks.push(block);
    this.open = this.blocks.length - 1;
    frames.push({
      event: 'content_block_start',
      data: { type: 'content_block_start', index: this.open, content_block: kind === 'text' ? { type: 'text', text: '' } : { type: 'thinking', thinking: '', signature: '' } },
    });
    return this.open;
  }

  private closeOpen(frames: SseFrame[]): void {
    if (this.open < 0) return;
    frames.push({ event: 'content_block_stop', data: { type: 'content_block_stop', index: this.open } });
    this.open = -1;
  }
}

function delta(index: number, d: Record<string, unknown>): SseFrame {
  return { event: 'content_block_delta', data: { type: 'content_block_delta', index, delta: d } };
}

/** A tool call's arguments JSON → `input`; an unparsable one (cut by max_tokens) becomes {} (Anthropic's input is an object). */
function parseInput(json: string): unknown {
  try {
    const v = JSON.parse(json) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

/** Anthropic SSE wire format of one frame. */
export function formatSseFrame(f: SseFrame): string {
  return `event: ${f.event}\ndata: ${JSON.stringify(f.data)}\n\n`;
}
