// Lookup ("prompt lookup") decoding: draft tokens come from n-gram matches — the longest recent
// n-gram (4 down to 2 tokens) ending the current sequence is looked up earlier in the same
// sequence (prompt + output so far) and then in a bounded cross-request cache of recent outputs
// (agents regenerate similar code); the tokens that followed it are the draft. The generator
// verifies all drafts in one forward pass and keeps the run the sampler agrees with.
//
// Why no draft model: none would fit next to the main model's float32 weights on CPU, and n-gram
// drafts cost nothing when they are not found.
//
// Adaptive: each request sizes its drafts from how the last ones fared, and after a streak of
// drafts that were rejected outright it stops drafting for a growing number of steps, so a
// workload whose drafts never match pays (almost) nothing (a rejected draft costs one wider
// forward pass).

const MAX_N = 4;
const MIN_N = 2;
export const MAX_DRAFT = 8;

const key = (toks: readonly number[], end: number, n: number): string => {
  let s = `${n}`;
  for (let i = end - n; i < end; i++) s += `,${toks[i]}`;
  return s;
};

/** n-gram → the position right after its most recent occurrence, over one growing sequence. */
export class NgramIndex {
  private readonly at = new Map<string, number>();
  private indexed = 0;
  constructor(readonly tokens: number[]) {}

  /** Indexes every n-gram that ends before the last token (so the current suffix never finds itself). */
  private catchUp(): void {
    const t = this.tokens;
    // n-grams ending at position e (exclusive) are indexed once e <= length - 1.
    for (let e = Math.max(this.indexed, MIN_N); e <= t.length - 1; e++) {
      for (let n = MIN_N; n <= MAX_N && n <= e; n++) this.at.set(key(t, e, n), e);
    }
    this.indexed = Math.max(this.indexed, t.length);
  }

  /** Up to `k` tokens that followed the longest earlier occurrence of the current suffix. */
  draft(k: number): number[] {
    this.catchUp();
    const t = this.tokens;
    for (let n = Math.min(MAX_N, t.length - 1); n >= MIN_N; n--) {
      const pos = this.at.get(key(t, t.length, n));
      if (pos !== undefined && pos < t.length) return t.slice(pos, Math.min(pos + k, t.length));
    }
    return [];
  }
}

/**
 * Cross-request n-gram cache: recent generated sequences (bounded by total tokens, oldest dropped
 * first), indexed by their n-grams. One per loaded model, shared by its requests.
 */
export class NgramCache {
  private readonly seqs = new Map<number, number[]>();
  private readonly index = new Map<string, { seq: number; pos: number }>();
  private nextId = 1;
  private total = 0;
  constructor(private readonly maxTokens = 64 * 1024) {}

  /** Remembers a finished sequence (the tail of prompt + output that the model produced). */
  add(tokens: readonly number[]): void {
    if (tokens.length <= MIN_N || tokens.length > this.maxTokens) return;
    const id = this.nextId++;
    const seq = tokens.slice();
    this.seqs.set(id, seq);
    this.total += seq.length;
    for (let e = MIN_N; e <= seq.length - 1; e++) {
      for (let n = MIN_N; n <= MAX_N && n <= e; n++) this.index.set(key(seq, e, n), { seq: id, pos: e });
    }
    while (this.total > this.maxTokens) {
      const [oldest, s] = this.seqs.entries().next().value as [number, number[]];
      this.seqs.delete(oldest);
      this.total -= s.length;
    }
    // Entries of dropped sequences are skipped at lookup; rebuild when they dominate the index.
    if (this.index.size > 8 * this.maxTokens) {
      for (const [k, v] of this.index) if (!this.seqs.has(v.seq)) this.index.delete(k);
    }
  }

  /** Up to `k` tokens that followed the longest n-gram ending `tokens`, or []. */
  draft(tokens: readonly number[], k: number): number[] {
    for (let n = Math.min(MAX_N, tokens.length); n >= MIN_N; n--) {
      const hit = this.index.get(key(tokens, tokens.length, n));
      if (!hit) continue;
      const seq = this.seqs.get(hit.seq);
      if (!seq) continue;
      return seq.slice(hit.pos, Math.min(hit.pos + k, seq.length));
    }
    return [];
  }

  get sequences(): number {
    return this.seqs.size;
  }
}

/** Per-request drafting policy (sizes drafts, backs off when they keep failing). */
export class DraftPolicy {
  private k = 4;
  private missStreak = 0;
  private pause = 0;
  private backoff = 4;
  proposed = 0;
  accepted = 0;
  verifySteps = 0;

  /** Draft length to ask for this step (0 = do not draft now). */
  want(): number {
    if (this.pause > 0) {
      this.pause--;
      return 0;
    }
    return this.k;
  }

  /** Feedback after verifying a draft of `len` tokens of which `ok` were accepted. */
  record(len: number, ok: number): void {
    this.verifySteps++;
    this.proposed += len;
    this.accepted += ok;
    if (ok === len) this.k = Math.min(MAX_DRAFT, this.k + 2);
    else this.k = Math.max(2, ok + 1);
    if (ok === 0) {
      if (++this.missStreak >= 3) {
        this.pause = this.backoff;
        this.backoff = Math.min(256, this.backoff * 2);
        this.missStreak = 0;
      }
    } else {
      this.missStreak = 0;
      this.backoff = 4;
    }
  }
}
