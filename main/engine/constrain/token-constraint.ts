// A JSON constraint at the token level, as the sampler uses it (llama.cpp's order): the sampler
// first draws from the unconstrained distribution and asks `accepts(id)` — one short byte walk,
// enough for most steps — and only when that token is refused asks `allowedTokens()` for the full
// mask (token-table.ts) and draws again among those. EOS is allowed only once the document is
// complete; `done` tells the generator to stop because nothing may follow.
import { advanceBytes, canEnd, initialState, isDone, type InitialOptions, type RecognizerState } from './recognizer.ts';
import type { ValueNode } from './schema.ts';
import { allowedTokenIds, tokenMask, type TokenMask, type TokenTable } from './token-table.ts';

export interface ConstraintStats {
  /** Sampled tokens checked with accepts(). */
  checks: number;
  /** Full masks computed (the sampled token was refused). */
  masks: number;
  /** Milliseconds spent in accepts() + allowedTokens() + advance(). */
  ms: number;
  /** Milliseconds spent computing masks. */
  maskMs: number;
}

export class TokenConstraint {
  private state: RecognizerState;
  /** The state after the last token accepted by accepts(): advance() on it is free. */
  private lookahead: { id: number; state: RecognizerState } | null = null;
  readonly stats: ConstraintStats = { checks: 0, masks: 0, ms: 0, maskMs: 0 };

  constructor(
    private readonly table: TokenTable,
    node: ValueNode,
    private readonly eos: ReadonlySet<number>,
    opts: InitialOptions = {},
  ) {
    this.state = initialState(node, opts);
  }

  /** The document is complete and no token but EOS may follow. */
  get done(): boolean {
    return isDone(this.state);
  }

  /** EOS may be sampled now. */
  get canEnd(): boolean {
    return canEnd(this.state);
  }

  accepts(id: number): boolean {
    const t0 = performance.now();
    this.stats.checks++;
    try {
      if (this.eos.has(id)) return canEnd(this.state);
      const b = this.table.bytes[id];
      if (!b) return false;
      const s = advanceBytes(this.state, b);
      if (!s) return false;
      this.lookahead = { id, state: s };
      return true;
    } finally {
      this.stats.ms += performance.now() - t0;
    }
  }

  /** Every id allowed next (EOS ids included when the document may end). Empty only at a dead end. */
  allowedTokens(): number[] {
    const t0 = performance.now();
    this.stats.masks++;
    const out = allowedTokenIds(this.table, this.state);
    if (canEnd(this.state)) for (const e of this.eos) out.push(e);
    const dt = performance.now() - t0;
    this.stats.maskMs += dt;
    this.stats.ms += dt;
    return out;
  }

  /**
   * The same set as allowedTokens(), as the shorter list: `deny` inside strings (every id of the
   * model's vocabulary not listed is allowed), `allow` elsewhere (EOS included when it may end).
   */
  mask(): TokenMask {
    const t0 = performance.now();
    this.stats.masks++;
    const m = tokenMask(this.table, this.state);
    if ('allow' in m && canEnd(this.state)) for (const e of this.eos) m.allow.push(e);
    const dt = performance.now() - t0;
    this.stats.maskMs += dt;
    this.stats.ms += dt;
    return m;
  }

  /** Moves past token `id` (EOS ids are a no-op). Throws when the id is not allowed. */
  advance(id: number): void {
    if (this.eos.has(id)) return;
    const t0 = performance.now();
    try {
      let s: RecognizerState | null;
      if (this.lookahead && this.lookahead.id === id) s = this.lookahead.state;
      else {
        const b = this.table.bytes[id];
        s = b ? advanceBytes(this.state, b) : null;
      }
      this.lookahead = null;
      if (!s) throw new Error('constrained decoding: token is not allowed here');
      this.state = s;
    } finally {
      this.stats.ms += performance.now() - t0;
    }
  }
}
