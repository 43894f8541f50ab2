// Where a writer's output events come from (see OutputSource): the one splitter over the local
// engine's text, or the events a remote upstream (or a cached remote answer) already split.
import type { ServerTextPipeline } from './hooks.ts';
import type { DeltaEvent, PreparedGeneration } from './generation.ts';
import { OutputSplitter, type OutputEvent } from './output-split.ts';

/** A delta relayed from a remote upstream: already split into output events there. */
export type RelayedDelta = DeltaEvent & { events: OutputEvent[] };

/**
 * Where a writer's output events come from. Local generations: the one splitter (reasoning, then
 * tool calls) over the engine's text. Remote ones: the events the upstream already split
 * (`reasoning_content`, `tool_calls`). Writers never split text themselves, so every API reports
 * both kinds of generation alike.
 */
export interface OutputSource {
  /** Events of one delta (streaming). */
  push(ev: DeltaEvent): OutputEvent[];
  /** End of the stream: whatever the splitter still held. */
  flush(): OutputEvent[];
  /** Non-stream: every output event of the whole generation (`text` = all deltas' text). */
  all(text: string): OutputEvent[];
}

export interface OutputSourceOptions {
  /** Split a leading think block out as reasoning (default: the request's `prep.reasoning`). */
  reasoning?: boolean;
}

export function localOutput(prep: PreparedGeneration, text: ServerTextPipeline, opts: OutputSourceOptions): OutputSource {
  const splitOpts = () => ({
    reasoning: opts.reasoning ?? (prep.route === 'chat' && prep.reasoning === true),
    startInThinking: prep.startInThinking === true,
    toolParser: prep.toolsActive ? text.createToolCallParser() : null,
  });
  const stream = new OutputSplitter(splitOpts());
  return {
    push: (ev) => stream.push(ev.text),
    flush: () => stream.flush(),
    all: (whole) => {
      const sp = new OutputSplitter(splitOpts());
      return [...sp.push(whole), ...sp.flush()];
    },
  };
}

export function relayedOutput(seen: OutputEvent[], opts: OutputSourceOptions, prep: PreparedGeneration): OutputSource {
  // A writer that keeps reasoning inside the answer (reasoning_format "none") gets it as the
  // upstream model wrote it: a think block at the start of the content.
  const keepInline = (opts.reasoning ?? prep.reasoning === true) === false;
  let open = false;
  const inline = (evs: OutputEvent[]): OutputEvent[] => {
    if (!keepInline) return evs;
    const out: OutputEvent[] = [];
    for (const e of evs) {
      if (e.type === 'reasoning') {
        out.push({ type: 'content', text: `${open ? '' : '<think>'}${e.text}` });
        open = true;
      } else {
        if (open && e.type === 'content') {
          out.push({ type: 'content', text: `</think>${e.text}` });
          open = false;
          continue;
        }
        out.push(e);
      }
    }
    return out;
  };
  return {
    push: (ev) => inline((ev as Partial<RelayedDelta>).events ?? []),
    flush: () => (open ? ((open = false), [{ type: 'content', text: '</think>' }]) : []),
    all: () => {
      open = false;
      const out = inline(seen);
      if (open) out.push({ type: 'content', text: '</think>' });
      open = false;
      return out;
    },
  };
}
