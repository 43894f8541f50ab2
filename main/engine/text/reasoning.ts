// Splits a thinking model's output into its reasoning and its answer, the way llama-server
// (`--reasoning-format deepseek`) and vLLM's reasoning parsers do: the text of a leading
// `<think>…</think>` block is reasoning, the rest is content. One streaming splitter serves every
// API (OpenAI chat `reasoning_content`, Anthropic `thinking` blocks, Responses `reasoning` items,
// Ollama `thinking`), so they all agree, stream or not.
//
// Rules (chosen so the result never depends on how the text was cut into deltas):
// - Only a block at the very start of the output counts (leading whitespace allowed): a `<think>`
//   later in an answer (e.g. a model explaining HTML tags) is content.
// - `startInThinking`: the prompt already opened the block (DeepSeek-R1 style templates end the
//   generation prompt with `<think>\n`), so the output begins inside it.
// - Whitespace right after `</think>` is dropped (Qwen3 writes `</think>\n\n`).
// - A block that never closes (max_tokens cut it) is all reasoning, as llama-server does.
// - Tags split across deltas are held back (only the few characters that could still become a tag).

export interface ReasoningSplit {
  reasoning: string;
  content: string;
}

export interface ReasoningSplitterOptions {
  /** The prompt ends inside an open thinking block (see promptOpensThinking). */
  startInThinking?: boolean;
  open?: string;
  close?: string;
}

export const THINK_OPEN = '<think>';
export const THINK_CLOSE = '</think>';

type State = 'start' | 'thinking' | 'after' | 'content';

/** Longest suffix of `text` that is a proper prefix of `tag` (text that may still become the tag). */
function partialTagLength(text: string, tag: string): number {
  const max = Math.min(text.length, tag.length - 1);
  for (let n = max; n > 0; n--) {
    if (tag.startsWith(text.slice(text.length - n))) return n;
  }
  return 0;
}

export class ReasoningSplitter {
  private state: State;
  private held = '';
  private readonly open: string;
  private readonly close: string;
  private saw = false;

  constructor(opts: ReasoningSplitterOptions = {}) {
    this.open = opts.open ?? THINK_OPEN;
    this.close = opts.close ?? THINK_CLOSE;
    this.state = opts.startInThinking ? 'thinking' : 'start';
    if (opts.startInThinking) this.saw = true;
  }

  /** True once a thinking block was found (or the prompt opened one). */
  get sawReasoning(): boolean {
    return this.saw;
  }

  /** True while the output is inside the thinking block. */
  get inReasoning(): boolean {
    return this.state === 'thinking';
  }

  push(text: string): ReasoningSplit {
    const out: ReasoningSplit = { reasoning: '', content: '' };
    let buf = this.held + text;
    this.held = '';
    // Each state consumes what it can decide and hands the rest to the next one.
    for (;;) {
      if (this.state === 'content') {
        out.content += buf;
        return out;
      }
      if (this.state === 'start') {
        const lead = buf.length - buf.trimStart().length;
        const rest = buf.slice(lead);
        if (rest.startsWith(this.open)) {
          this.state = 'thinking';
          this.saw = true;
          buf = rest.slice(this.open.length);
          continue;
        }
        if (rest.length < this.open.length && this.open.startsWith(rest)) {
          // Still undecided (only whitespace, or a beginning of the tag).
          this.held = buf;
          return out;
        }
        this.state = 'content';
        continue;
      }
      if (this.state === 'thinking') {
        const at = buf.indexOf(this.close);
        if (at >= 0) {
          out.reasoning += buf.slice(0, at);
          buf = buf.slice(at + this.close.length);
          this.state = 'after';
          continue;
        }
        const keep = partialTagLength(buf, this.close);
        out.reasoning += buf.slice(0, buf.length - keep);
        this.held = buf.slice(buf.length - keep);
        return out;
      }
      // after: drop the whitespace that separates the block from the answer
      const trimmed = buf.trimStart();
      if (trimmed.length === 0) return out;
      this.state = 'content';
      buf = trimmed;
    }
  }

  /** End of output: whatever was held is released (an unfinished tag is text). */
  flush(): ReasoningSplit {
    const held = this.held;
    this.held = '';
    if (this.state === 'thinking') return { reasoning: held, content: '' };
    if (this.state === 'after') return { reasoning: '', content: '' };
    return { reasoning: '', content: held };
  }
}

/** Whole-text split: same result as streaming it through a ReasoningSplitter. reasoning is null when there was no block. */
export function splitReasoning(text: string, opts: ReasoningSplitterOptions = {}): { reasoning: string | null; content: string } {
  const s = new ReasoningSplitter(opts);
  const a = s.push(text);
  const b = s.flush();
  return { reasoning: s.sawReasoning ? a.reasoning + b.reasoning : null, content: a.content + b.content };
}

/**
 * Whether a rendered prompt leaves a thinking block open for the model (the generation prompt ends
 * with `<think>` and no `</think>` after it), e.g. DeepSeek-R1 distills. Qwen3's non-thinking
 * prompt ends with `<think>\n\n</think>\n\n`: closed, so false.
 */
export function promptOpensThinking(promptText: string, open = THINK_OPEN, close = THINK_CLOSE): boolean {
  const at = promptText.lastIndexOf(open);
  if (at < 0) return false;
  const tail = promptText.slice(at + open.length);
  return !tail.includes(close) && tail.trim().length === 0;
}
