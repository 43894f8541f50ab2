// The one place where a generation's raw text becomes what every API reports: reasoning (a leading
// `<think>` block), answer text and tool calls, in output order. Each API route turns these events
// into its own wire format (OpenAI chat deltas, Anthropic content blocks, Responses items, Ollama
// `thinking`/`tool_calls`), so all of them split the same text the same way, stream or not.
// Order of the stages: reasoning first (a tool call written while thinking is not a call), then the
// tool-call parser on the answer only.
import { ReasoningSplitter, promptOpensThinking } from '../engine/text/reasoning.ts';
import type { ToolCall, ToolParserEvent } from '../engine/text/types.ts';

export type OutputEvent = { type: 'reasoning'; text: string } | ToolParserEvent;

export interface ToolParserLike {
  push(text: string): ToolParserEvent[];
  flush(): ToolParserEvent[];
}

export interface OutputSplitOptions {
  /** Split a leading `<think>…</think>` block out as reasoning (false: it stays content). */
  reasoning: boolean;
  /** The rendered prompt ends inside an open `<think>` block (promptOpensThinking(promptText)). */
  startInThinking?: boolean;
  /** engine-text's streaming tool-call parser when the request offered tools, else null. */
  toolParser: ToolParserLike | null;
}

export class OutputSplitter {
  private readonly reasoning: ReasoningSplitter | null;
  private readonly tools: ToolParserLike | null;

  constructor(opts: OutputSplitOptions) {
    this.reasoning = opts.reasoning ? new ReasoningSplitter({ startInThinking: opts.startInThinking === true }) : null;
    this.tools = opts.toolParser;
  }

  push(text: string): OutputEvent[] {
    if (!text) return [];
    if (!this.reasoning) return this.answer(text);
    const s = this.reasoning.push(text);
    const out: OutputEvent[] = [];
    if (s.reasoning) out.push({ type: 'reasoning', text: s.reasoning });
    if (s.content) out.push(...this.answer(s.content));
    return out;
  }

  /** End of the output: releases held text and unfinished tool-call markup (as content). */
  flush(): OutputEvent[] {
    const out: OutputEvent[] = [];
    if (this.reasoning) {
      const s = this.reasoning.flush();
      if (s.reasoning) out.push({ type: 'reasoning', text: s.reasoning });
      if (s.content) out.push(...this.answer(s.content));
    }
    if (this.tools) out.push(...this.tools.flush().filter((e) => e.type !== 'content' || e.text));
    return out;
  }

  private answer(text: string): OutputEvent[] {
    if (!this.tools) return [{ type: 'content', text }];
    return this.tools.push(text).filter((e) => e.type !== 'content' || e.text);
  }
}

export interface CollectedOutput {
  /** null when the output had no thinking block (or the split is off). */
  reasoning: string | null;
  /** The answer text; null when it is only whitespace and there are tool calls (OpenAI's convention). */
  content: string | null;
  toolCalls: ToolCall[];
}

/** Non-stream: the whole text through the same splitter, collected. */
export function collectOutput(text: string, opts: OutputSplitOptions): CollectedOutput {
  const sp = new OutputSplitter(opts);
  return collectEvents([...sp.push(text), ...sp.flush()]);
}

/** Collects events (e.g. of a whole generation) into one message. */
export function collectEvents(events: OutputEvent[]): CollectedOutput {
  let reasoning: string | null = null;
  let content = '';
  const calls: ToolCall[] = [];
  for (const e of events) {
    if (e.type === 'reasoning') reasoning = (reasoning ?? '') + e.text;
    else if (e.type === 'content') content += e.text;
    else if (e.type === 'tool_call') calls[e.index] = { id: e.id, type: 'function', function: { name: e.name, arguments: '' } };
    else if (calls[e.index]) calls[e.index]!.function.arguments += e.argumentsDelta;
  }
  const toolCalls = calls.filter(Boolean);
  return { reasoning, content: toolCalls.length > 0 && content.trim() === '' ? null : content, toolCalls };
}

export { promptOpensThinking };
