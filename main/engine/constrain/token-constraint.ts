// A JSON constraint at the token level, as the sampler uses it (llama.cpp's order): the sampler
// first draws from the unconstrained distribution and asks `accepts(id)` — one short byte walk,
// enough for most steps — and only when that token is refused asks `allowedTokens()` for the full
// mask (token-table.ts) and draws again among those. EOS is allowed only once the document is
// complete; `done` tells the generator to stop because nothing may follow.
import { advanceByte, advanceBytes, canEnd, initialState, isDone, type InitialOptions, type RecognizerState } from './recognizer.ts';
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
    let m = tokenMask(this.table, this.state);
    if (canEnd(this.state)) {
      // New lists: the mask's own may be a cached one.
      if ('allow' in m) m = { allow: [...m.allow, ...this.eos] };
      else m = { deny: m.deny.filter((id) => !this.eos.has(id)) };
    }
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

/**
 * A constraint that applies only after a trigger text (llama.cpp's "lazy grammar"), for tool calls
 * under tool_choice "auto": the model writes freely; once its output contains `trigger` (e.g.
 * `<tool_call>`), the rest of that call — `prefix` (what follows the trigger) + JSON + `suffix` — is
 * constrained like TokenConstraint; when the call is complete the model is free again (a further
 * call re-triggers). EOS is refused only inside a call; `done` is never true (the model ends).
 * A token that would finish a call and continue with free text in the same token is refused, so a
 * call always ends at a token boundary (never invalid, slightly narrower).
 */
export class TriggeredTokenConstraint {
  /** null = free text; otherwise inside a call. */
  private inner: RecognizerState | null = null;
  /** The last bytes of free text (latin1), to spot the trigger across tokens. */
  private window = '';
  private readonly start: RecognizerState;
  private readonly trigger: string;
  private lookahead: { id: number; inner: RecognizerState | null; window: string } | null = null;
  readonly stats: ConstraintStats = { checks: 0, masks: 0, ms: 0, maskMs: 0 };

  constructor(
    private readonly table: TokenTable,
    node: ValueNode,
    private readonly eos: ReadonlySet<number>,
    trigger: string,
    opts: InitialOptions = {},
  ) {
    if (trigger.length === 0) throw new Error('empty trigger');
    this.trigger = String.fromCharCode(...new TextEncoder().encode(trigger));
    this.start = initialState(node, opts);
  }

  get done(): boolean {
    return false;
  }

  /** Whether the output is inside a triggered call (tests, diagnostics). */
  get active(): boolean {
    return this.inner !== null;
  }

  private step(inner: RecognizerState | null, window: string, bytes: Uint8Array): { inner: RecognizerState | null; window: string } | null {
    const T = this.trigger;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (inner === null) {
        window = (window + String.fromCharCode(b)).slice(-T.length);
        if (window === T) {
          inner = this.start;
          window = '';
        }
      } else {
        const next = advanceByte(inner, b);
        if (!next) return null;
        // A complete call must end the token: free text may only start with the next one.
        if (isDone(next) && i < bytes.length - 1) return null;
        inner = isDone(next) ? null : next;
      }
    }
    return { inner, window };
  }

  accepts(id: number): boolean {
    const t0 = performance.now();
    this.stats.checks++;
    try {
      if (this.eos.has(id)) return this.inner === null;
      const b = this.table.bytes[id];
      if (!b) return this.inner === null; // special tokens: free text only
      const r = this.step(this.inner, this.window, b);
      if (!r) return false;
      this.lookahead = { id, ...r };
      return true;
    } finally {
      this.stats.ms += performance.now() - t0;
    }
  }

  mask(): TokenMask {
    const t0 = performance.now();
    this.stats.masks++;
    let m: TokenMask;
    if (this.inner !== null) m = tokenMask(this.table, this.inner);
    else {
      // Free text: everything except tokens that complete the trigger and then break the call.
      const deny: number[] = [];
      for (let k = 0; k < this.table.order.length; k++) {
        const id = this.table.order[k]!;
        if (!this.step(null, this.window, this.table.bytes[id]!)) deny.push(id);
      }
      m = { deny };
    }
    const dt = performance.now() - t0;
    this.stats.maskMs += dt;
    this.stats.ms += dt;
    return m;
  }

  allowedTokens(): number[] {
    const m = this.mask();
    if ('allow' in m) return [...m.allow];
    const denied = new Set(m.deny);
    const out: number[] = [];
    for (let id = 0; id < this.table.bytes.length; id++) if (!denied.has(id)) out.push(id);
    return out;
  }

  advance(id: number): void {
    if (this.eos.has(id)) return;
    const t0 = performance.now();
    try {
      let r: { inner: RecognizerState | null; window: string } | null;
      if (this.lookahead && this.lookahead.id === id) r = this.lookahead;
      else {
        const b = this.table.bytes[id];
        r = b ? this.step(this.inner, this.window, b) : this.inner === null ? { inner: null, window: this.window } : null;
      }
      this.lookahead = null;
      if (!r) throw new Error('constrained decoding: token is not allowed here');
      this.inner = r.inner;
      this.window = r.window;
    } finally {
      this.stats.ms += performance.now() - t0;
    }
  }
}
