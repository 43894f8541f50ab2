// Incremental detokenizer for streaming. Decoding each token on its own breaks characters whose
// UTF-8 bytes are spread over several byte-level tokens (🫠, 𝔘, 龘 in Qwen3) and loses the leading
// space that SentencePiece decoders (Metaspace / `Strip` start=1) remove from the first token.
// So, like HF's TextStreamer and vLLM: re-decode a small window of ids starting at the last point
// where emitted text was complete (`prefixStart`) and emit only what grew past the already emitted
// part of that window. A trailing U+FFFD may be an incomplete character: hold it back until later
// tokens complete it (or flush() at the end), but emit what precedes it. Both window decodes apply the same leading-strip,
// so the difference keeps spaces, and the concatenation equals decode(allIds).
import type { DecodeOptions, TextTokenizer } from './tokenizer.ts';

export interface IncrementalDetokenizer {
  /** Adds one generated token; returns the text that is now safe to emit ('' while held back). */
  push(tokenId: number): string;
  /** Ends the stream: returns everything still held back (may end in U+FFFD if the bytes were truly broken). */
  flush(): string;
  /** Tokens pushed so far. */
  readonly tokenCount: number;
}

export interface DetokenizerOptions {
  /** Default true: special tokens (`<|im_end|>`, …) produce no text. */
  skipSpecialTokens?: boolean;
  /** Special tokens to keep even when skipping (the pipeline passes the tool-call markers). */
  keepTokenIds?: ReadonlySet<number>;
}

const REPLACEMENT = '\uFFFD';

export class StreamingDetokenizer implements IncrementalDetokenizer {
  private readonly ids: number[] = [];
  /** Start of the decode window: every id before it has been fully emitted. */
  private prefixStart = 0;
  /** End of the part of the window whose text is already emitted. */
  private readStart = 0;
  /** Characters emitted past decode(prefixStart..readStart) while the window still ends in U+FFFD. */
  private heldEmitted = 0;
  private readonly decodeOpts: DecodeOptions;

  constructor(private readonly tokenizer: TextTokenizer, opts: DetokenizerOptions = {}) {
    this.decodeOpts = {
      skipSpecialTokens: opts.skipSpecialTokens ?? true,
      keepTokenIds: opts.keepTokenIds,
      cleanUpTokenizationSpaces: false,
    };
  }

  get tokenCount(): number {
    return this.ids.length;
  }

  push(tokenId: number): string {
    this.ids.push(tokenId);
    const prefixText = this.decodeRange(this.prefixStart, this.readStart);
    const fullText = this.decodeRange(this.prefixStart, this.ids.length);
    const done = prefixText.length + this.heldEmitted;
    if (!fullText.startsWith(prefixText)) return '';
    if (fullText.endsWith(REPLACEMENT)) {
      // Only the last U+FFFD can still turn into a real character (an incomplete trailing
      // sequence decodes to exactly one U+FFFD); what precedes it is final, so emit it now.
      const stable = fullText.length - 1;
      if (stable <= done) return '';
      const out = fullText.slice(done, stable);
      this.heldEmitted += out.length;
      return out;
    }
    const out = fullText.slice(done);
    this.prefixStart = this.readStart;
    this.readStart = this.ids.length;
    this.heldEmitted = 0;
    return out;
  }

  flush(): string {
    const prefixText = this.decodeRange(this.prefixStart, this.readStart);
    const fullText = this.decodeRange(this.prefixStart, this.ids.length);
    const done = prefixText.length + this.heldEmitted;
    this.prefixStart = this.readStart = this.ids.length;
    this.heldEmitted = 0;
    return fullText.length > done ? fullText.slice(done) : '';
  }

  private decodeRange(start: number, end: number): string {
    if (end <= start) return '';
    return this.tokenizer.decode(this.ids.slice(start, end), this.decodeOpts);
  }
}
