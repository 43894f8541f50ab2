// Per-token log-probabilities on their way from the sampler to `delta` events (OpenAI logprobs).
// The sampler gives ids and numbers; this adds each token's text and bytes and decides which delta
// reports which token, so that the reported tokens follow the text the client actually receives:
//  - a token's text is what the incremental detokenizer rendered for it ('' for the first bytes of a
//    character that a later token completes; the character then belongs to that later token), so
//    the concatenated token texts equal the output text;
//  - the stop-string matcher holds text back; a token is reported in the delta that releases the
//    end of its text;
//  - when a stop string is cut, tokens whose text starts before the cut are reported (a token
//    straddling the cut produced returned text), tokens wholly inside the cut text are not.
// Pure JS (no MLX): the engine process composes it with the detokenizer and stop matcher.
import type { TokenLogprob, TokenLogprobAlternative } from '../types.ts';

/** Raw numbers from the sampler (model/sampling.ts TokenLogprobs). */
export interface SampledLogprobs {
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

/** Text and exact bytes of single tokens, memoized (alternatives repeat a lot between steps). */
export class TokenTexts {
  private readonly memo = new Map<number, { token: string; bytes: number[] }>();
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false });

  /**
   * `bytesOf`: the token's bytes as the detokenizer emits them (constrain's token table), null for
   * special tokens; `decodeOne`: the tokenizer's decode of one id with special tokens kept.
   */
  constructor(
    private readonly bytesOf: (id: number) => Uint8Array | null | undefined,
    private readonly decodeOne: (id: number) => string,
    private readonly maxEntries = 65_536,
  ) {}

  get(id: number): { token: string; bytes: number[] } {
    let e = this.memo.get(id);
    if (e) return e;
    const b = this.bytesOf(id);
    if (b && b.length > 0) {
      // From the bytes rather than decode([id]): SentencePiece decoders strip a single token's
      // leading space. A partial UTF-8 character reads as U+FFFD.
      e = { token: this.utf8.decode(b), bytes: [...b] };
    } else {
      let token = '';
      try {
        token = this.decodeOne(id);
      } catch {
        token = '';
      }
      e = { token, bytes: [...new TextEncoder().encode(token)] };
    }
    if (this.memo.size >= this.maxEntries) this.memo.clear();
    this.memo.set(id, e);
    return e;
  }
}

interface Pending {
  lp: TokenLogprob;
  /** Span of the token's text in the stream pushed into the stop matcher; -1 while it has none yet. */
  start: number;
  end: number;
}

/** Assigns generated tokens to the text the stop matcher releases (see the file comment). */
export class LogprobTracker {
  private readonly pending: Pending[] = [];
  /** UTF-16 units pushed into the stop matcher so far. */
  private streamPos = 0;
  /** UTF-16 units released to the client so far. */
  private emittedPos = 0;

  constructor(private readonly texts: TokenTexts) {}

  /** A generated token and the text the detokenizer rendered for it (pushed to the stop matcher next). */
  push(s: SampledLogprobs, piece: string): void {
    const own = this.texts.get(s.id);
    const top: TokenLogprobAlternative[] = s.top.map((t) => ({ id: t.id, logprob: t.logprob, ...this.texts.get(t.id) }));
    this.pending.push({ lp: { id: s.id, token: piece, logprob: s.logprob, bytes: own.bytes, top }, start: -1, end: -1 });
    if (piece.length > 0) this.assign(piece.length);
  }

  /** Text the detokenizer released at the end (held partial characters): it belongs to the waiting tokens. */
  pushTail(tail: string): void {
    if (tail.length === 0) return;
    const waiting = this.pending.filter((p) => p.start < 0);
    if (waiting.length > 0) waiting[waiting.length - 1]!.lp.token += tail;
    else if (this.pending.length > 0) {
      // Cannot happen with the streaming detokenizer (a tail means some token is waiting); keep the
      // concatenation right anyway.
      const last = this.pending[this.pending.length - 1]!;
      last.lp.token += tail;
      last.end += tail.length;
      this.streamPos += tail.length;
      return;
    }
    this.assign(tail.length);
  }

  /** `n` more UTF-16 units were released to the client: the tokens whose text is now complete. */
  emitted(n: number): TokenLogprob[] {
    this.emittedPos += n;
    const out: TokenLogprob[] = [];
    while (this.pending.length > 0) {
      const p = this.pending[0]!;
      if (p.end < 0 || p.end > this.emittedPos) break;
      out.push(this.finish(this.pending.shift()!));
    }
    return out;
  }

  /** A stop string was cut after the released text: tokens that contributed to it, the rest dropped. */
  stopped(): TokenLogprob[] {
    const out = this.pending.filter((p) => p.start >= 0 && p.start < this.emittedPos).map((p) => this.finish(p));
    this.pending.length = 0;
    return out;
  }

  /** Generation ended otherwise: every remaining token (also ones that rendered no text, e.g. skipped special tokens). */
  end(): TokenLogprob[] {
    const out = this.pending.map((p) => this.finish(p));
    this.pending.length = 0;
    return out;
  }

  private assign(len: number): void {
    const start = this.streamPos;
    this.streamPos += len;
    for (const p of this.pending) {
      if (p.start >= 0) continue;
      p.start = start;
      p.end = this.streamPos;
    }
  }

  /** The chosen token, where it is among the alternatives, is shown with the same text. */
  private finish(p: Pending): TokenLogprob {
    for (const t of p.lp.top) if (t.id === p.lp.id) t.token = p.lp.token;
    return p.lp;
  }
}
