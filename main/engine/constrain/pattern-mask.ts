// Token masks inside pattern/format strings (email, uuid, date-time, `pattern`, constrained free
// keys), without walking the whole vocabulary per automaton state.
//
// A DFA over code points treats whole ranges of characters alike: for `format: email`, every
// letter behaves the same in every state, and so does every digit. Those ranges are its
// character classes (the alphabet partition: code points with the same target in every state).
// Two tokens whose characters fall into the same classes, in the same order, are allowed in
// exactly the same states and lead to the same state — `abc` and `xyz` are one token to the
// automaton. So, once per automaton:
//   - the classes and a class transition table (a lookup instead of a range search);
//   - the vocabulary's string-body tokens grouped by their class sequence; tokens with a class no
//     state takes (a space, any non-ASCII character for email) are dropped for good;
//   - the distinct sequences sorted, with their common prefixes, for a trie walk.
// Then per automaton state, a walk over the distinct sequences (a few thousand instead of
// 151,936 tokens, dead prefixes skipped) gives the allowed groups with their end state and
// character count; each step only filters the groups by the length bounds and checks the tokens
// that close the string (their bytes after the quote are checked once per distinct tail).
// Everything is cached on the token table, keyed by the automaton's content, so the same schema
// in the next request (a new Dfa object with the same states) starts warm.
import { advanceBytes, pendingAllowed, pendingRange, readStringBody, stringCloseState, type PatternStringState, type RecognizerState, type StrScan } from './recognizer.ts';
import { dfaStep, type Dfa } from './regex.ts';
import { stringFeasible } from './schema.ts';

/** What this module needs from the token table (token-table.ts's TokenTable). */
export interface PatternTableView {
  readonly bytes: readonly (Uint8Array | null)[];
  readonly order: Int32Array;
  patternMasks?: PatternMaskCache;
}

/** Per table: the tokens' string-body readings, and per automaton content its class index. */
export interface PatternMaskCache {
  body: BodyTokens;
  byKey: Map<string, ClassIndex>;
  keyOf: WeakMap<Dfa, string>;
}

interface BodyTokens {
  /** Tokens that stay inside the string: characters (flattened) and the half-read tail, if any. */
  openIds: Int32Array;
  openStart: Int32Array;
  openCps: Int32Array;
  openPend: (StrScan | null)[];
  /** Tokens with an unescaped quote: the characters before it and the bytes after it. */
  closeIds: Int32Array;
  closeStart: Int32Array;
  closeCps: Int32Array;
  closeRest: Uint8Array[];
  closeRestKey: string[];
  /** Per id: the half-read tail of an open token (for the exact check per step). */
  pendOf: Map<number, StrScan>;
}

interface Group {
  seq: Uint16Array;
  /** Classes the half-read tail may still become; null when the tokens end on a boundary. */
  pend: Uint16Array | null;
  ids: Int32Array;
}

interface ClassIndex {
  dfa: Dfa;
  classes: number;
  /** delta[q * classes + c]: the next state, -1 none. */
  delta: Int32Array;
  asciiClass: Int32Array;
  /** Interval starts and their class, for code points ≥ 128. */
  bounds: Int32Array;
  boundClass: Int32Array;
  groups: Group[];
  /** Common prefix of group k's sequence with group k-1's. */
  lcp: Uint16Array;
  /** Close tokens: class sequence before the quote (null: a class no state takes). */
  closeSeq: (Uint16Array | null)[];
  perState: Map<number, StateTokens>;
}

interface IdGroup {
  endQ: number;
  chars: number;
  ids: Int32Array;
}

interface StateTokens {
  full: IdGroup[];
  /** All `full` ids in one array (strings without length bounds take them all). */
  fullAll: Int32Array;
  partial: IdGroup[];
  /** Close tokens whose characters before the quote end in an accepting state. */
  close: { k: number; endQ: number; chars: number }[];
}

const MAX_INDEXES = 32;
const MAX_STATES_CACHED = 1024;

function bodyTokens(table: PatternTableView): BodyTokens {
  const openIds: number[] = [];
  const openStart: number[] = [0];
  const openCps: number[] = [];
  const openPend: (StrScan | null)[] = [];
  const closeIds: number[] = [];
  const closeStart: number[] = [0];
  const closeCps: number[] = [];
  const closeRest: Uint8Array[] = [];
  const closeRestKey: string[] = [];
  const pendOf = new Map<number, StrScan>();
  for (let k = 0; k < table.order.length; k++) {
    const id = table.order[k]!;
    const b = table.bytes[id]!;
    const r = readStringBody(b);
    if (r.kind === 'open') {
      openIds.push(id);
      for (const c of r.cps) openCps.push(c);
      openStart.push(openCps.length);
      openPend.push(r.pend);
      if (r.pend) pendOf.set(id, r.pend);
    } else if (r.kind === 'close') {
      closeIds.push(id);
      for (const c of r.cps) closeCps.push(c);
      closeStart.push(closeCps.length);
      const rest = b.subarray(r.closeAt);
      closeRest.push(rest);
      closeRestKey.push(String.fromCharCode(...rest));
    }
  }
  return {
    openIds: Int32Array.from(openIds),
    openStart: Int32Array.from(openStart),
    openCps: Int32Array.from(openCps),
    openPend,
    closeIds: Int32Array.from(closeIds),
    closeStart: Int32Array.from(closeStart),
    closeCps: Int32Array.from(closeCps),
    closeRest,
    closeRestKey,
    pendOf,
  };
}

/** The automaton's content as a string: equal automata share one class index. */
function dfaKey(d: Dfa): string {
  const parts: string[] = [`${d.size}:${d.start}`];
  for (let q = 0; q < d.size; q++) {
    const t = d.trans[q]!;
    parts.push(`${d.accept[q]}${t.lo.join(',')}/${t.hi.join(',')}/${t.to.join(',')}`);
  }
  return parts.join(';');
}

function buildIndex(d: Dfa, body: BodyTokens): ClassIndex {
  // Alphabet partition: the interval starts of every transition, intervals with equal targets in
  // every state merged into one class.
  const pts = new Set<number>([0]);
  for (const t of d.trans) for (let k = 0; k < t.lo.length; k++) {
    pts.add(t.lo[k]!);
    if (t.hi[k]! < 0x10ffff) pts.add(t.hi[k]! + 1);
  }
  const starts = [...pts].sort((a, b) => a - b);
  const classOfSig = new Map<string, number>();
  const sigTargets: Int32Array[] = [];
  const intervalClass = new Int32Array(starts.length);
  for (let k = 0; k < starts.length; k++) {
    const cp = starts[k]!;
    const row = new Int32Array(d.size);
    for (let q = 0; q < d.size; q++) row[q] = dfaStep(d, q, cp);
    const sig = row.join(',');
    let c = classOfSig.get(sig);
    if (c === undefined) {
      c = sigTargets.length;
      classOfSig.set(sig, c);
      sigTargets.push(row);
    }
    intervalClass[k] = c;
  }
  const C = sigTargets.length;
  const delta = new Int32Array(d.size * C);
  for (let c = 0; c < C; c++) for (let q = 0; q < d.size; q++) delta[q * C + c] = sigTargets[c]![q]!;
  /** A class no state takes: a token with it is never allowed. */
  const dead = new Uint8Array(C);
  for (let c = 0; c < C; c++) dead[c] = sigTargets[c]!.every((x) => x < 0) ? 1 : 0;
  const bounds = Int32Array.from(starts);
  const boundClass = intervalClass;
  const classOf = (cp: number): number => {
    let a = 0;
    let b = bounds.length - 1;
    while (a < b) {
      const m = (a + b + 1) >> 1;
      if (bounds[m]! <= cp) a = m;
      else b = m - 1;
    }
    return boundClass[a]!;
  };
  const asciiClass = new Int32Array(128);
  for (let cp = 0; cp < 128; cp++) asciiClass[cp] = classOf(cp);
  const cls = (cp: number) => (cp < 128 ? asciiClass[cp]! : classOf(cp));

  // Group the open tokens by class sequence (+ the classes a half-read tail may become).
  const groupsByKey = new Map<string, { seq: number[]; pend: number[] | null; ids: number[] }>();
  const seq: number[] = [];
  for (let i = 0; i < body.openIds.length; i++) {
    seq.length = 0;
    let ok = true;
    for (let j = body.openStart[i]!; j < body.openStart[i + 1]!; j++) {
      const c = cls(body.openCps[j]!);
      if (dead[c]) {
        ok = false;
        break;
      }
      seq.push(c);
    }
    if (!ok) continue;
    let pend: number[] | null = null;
    const ps = body.openPend[i];
    if (ps) {
      const [lo, hi] = pendingRange(ps);
      const set = new Set<number>();
      for (let k = 0; k < bounds.length; k++) {
        const a = bounds[k]!;
        const z = k + 1 < bounds.length ? bounds[k + 1]! - 1 : 0x10ffff;
        if (z < lo || a > hi) continue;
        if (Math.max(a, lo) >= 0xd800 && Math.min(z, hi) <= 0xdfff) continue;
        if (!dead[boundClass[k]!]) set.add(boundClass[k]!);
      }
      if (set.size === 0) continue;
      pend = [...set].sort((a, b) => a - b);
    }
    const key = String.fromCharCode(...seq) + (pend ? '\uffff' + String.fromCharCode(...pend) : '');
    let g = groupsByKey.get(key);
    if (!g) groupsByKey.set(key, (g = { seq: [...seq], pend, ids: [] }));
    g.ids.push(body.openIds[i]!);
  }
  const keys = [...groupsByKey.keys()].sort();
  const groups: Group[] = [];
  const lcp = new Uint16Array(keys.length);
  let prev: number[] = [];
  keys.forEach((key, k) => {
    const g = groupsByKey.get(key)!;
    groups.push({ seq: Uint16Array.from(g.seq), pend: g.pend && Uint16Array.from(g.pend), ids: Int32Array.from(g.ids) });
    let l = 0;
    const n = Math.min(prev.length, g.seq.length);
    while (l < n && prev[l] === g.seq[l]) l++;
    lcp[k] = l;
    prev = g.seq;
  });

  const closeSeq: (Uint16Array | null)[] = [];
  for (let i = 0; i < body.closeIds.length; i++) {
    const s: number[] = [];
    let ok = true;
    for (let j = body.closeStart[i]!; j < body.closeStart[i + 1]!; j++) {
      const c = cls(body.closeCps[j]!);
      if (dead[c]) {
        ok = false;
        break;
      }
      s.push(c);
    }
    closeSeq.push(ok ? Uint16Array.from(s) : null);
  }
  return { dfa: d, classes: C, delta, asciiClass, bounds, boundClass, groups, lcp, closeSeq, perState: new Map() };
}

/** The groups allowed from state q0 (lengths not checked: they depend on the step). */
function walkState(ix: ClassIndex, q0: number): StateTokens {
  const { delta, classes: C, groups, lcp } = ix;
  // Allowed groups by (end state, characters): key endQ * 65536 + chars → group indexes.
  const byEnd = new Map<number, number[]>();
  const pByEnd = new Map<number, number[]>();
  const qs: number[] = [q0];
  let deadAt = Infinity;
  for (let k = 0; k < groups.length; k++) {
    const l = lcp[k]!;
    if (l > deadAt) continue;
    const g = groups[k]!;
    const seq = g.seq;
    let i = l;
    let q = qs[l]!;
    for (; i < seq.length; i++) {
      q = delta[q * C + seq[i]!]!;
      if (q < 0) break;
      qs[i + 1] = q;
    }
    if (i < seq.length) {
      deadAt = i;
      continue;
    }
    deadAt = Infinity;
    if (g.pend) {
      let any = false;
      for (let j = 0; j < g.pend.length && !any; j++) if (delta[q * C + g.pend[j]!]! >= 0) any = true;
      if (!any) continue;
      const key = q * 65536 + Math.min(seq.length + 1, 65535);
      const list = pByEnd.get(key);
      if (list) list.push(k);
      else pByEnd.set(key, [k]);
    } else {
      const key = q * 65536 + Math.min(seq.length, 65535);
      const list = byEnd.get(key);
      if (list) list.push(k);
      else byEnd.set(key, [k]);
    }
  }
  const pack = (m: Map<number, number[]>): IdGroup[] =>
    [...m].map(([key, ks]) => {
      let n = 0;
      for (const k of ks) n += groups[k]!.ids.length;
      const ids = new Int32Array(n);
      n = 0;
      for (const k of ks) {
        ids.set(groups[k]!.ids, n);
        n += groups[k]!.ids.length;
      }
      return { endQ: Math.floor(key / 65536), chars: key % 65536, ids };
    });
  const close: StateTokens['close'] = [];
  for (let k = 0; k < ix.closeSeq.length; k++) {
    const s = ix.closeSeq[k];
    if (!s) continue;
    let q = q0;
    for (let i = 0; i < s.length && q >= 0; i++) q = delta[q * C + s[i]!]!;
    if (q >= 0 && ix.dfa.accept[q] === 1) close.push({ k, endQ: q, chars: s.length });
  }
  const full = pack(byEnd);
  const fullAll = new Int32Array(full.reduce((n, g) => n + g.ids.length, 0));
  let at = 0;
  for (const g of full) {
    fullAll.set(g.ids, at);
    at += g.ids.length;
  }
  return { full, fullAll, partial: pack(pByEnd), close };
}

/** Appends typed ids to a plain array (sized once, then filled: several times faster than push). */
function appendAll(out: number[], ids: Int32Array): void {
  const start = out.length;
  out.length = start + ids.length;
  for (let i = 0; i < ids.length; i++) out[start + i] = ids[i]!;
}

function indexFor(table: PatternTableView, d: Dfa): { ix: ClassIndex; body: BodyTokens } {
  const cache = (table.patternMasks ??= { body: bodyTokens(table), byKey: new Map(), keyOf: new WeakMap() });
  let key = cache.keyOf.get(d);
  if (key === undefined) cache.keyOf.set(d, (key = dfaKey(d)));
  let ix = cache.byKey.get(key);
  if (ix) {
    // Most recently used last (the map is the LRU order).
    cache.byKey.delete(key);
  } else {
    ix = buildIndex(d, cache.body);
    if (cache.byKey.size >= MAX_INDEXES) cache.byKey.delete(cache.byKey.keys().next().value!);
  }
  cache.byKey.set(key, ix);
  return { ix, body: cache.body };
}

/**
 * The allowed ids in a pattern-string state (exactly what advancing the recognizer would allow):
 * the cached groups that fit the length bounds, the half-read tokens checked one by one, and the
 * closing tokens whose text before the quote is valid and whose bytes after it the recognizer
 * takes (once per distinct tail).
 */
export function patternAllowedIds(table: PatternTableView, state: RecognizerState, ps: PatternStringState, out: number[]): number[] {
  const alt = ps.alt;
  const { ix, body } = indexFor(table, alt.dfa!);
  let st = ix.perState.get(ps.q);
  if (!st) {
    st = walkState(ix, ps.q);
    if (ix.perState.size < MAX_STATES_CACHED) ix.perState.set(ps.q, st);
  }
  const len = ps.len;
  if (alt.minLength === 0 && alt.maxLength === Infinity) appendAll(out, st.fullAll);
  else {
    for (const g of st.full) {
      const n = len + g.chars;
      if (n <= alt.maxLength && stringFeasible(alt, g.endQ, n)) appendAll(out, g.ids);
    }
  }
  for (const g of st.partial) {
    const n = len + g.chars;
    if (n > alt.maxLength) continue;
    for (let i = 0; i < g.ids.length; i++) {
      const id = g.ids[i]!;
      if (pendingAllowed(alt, g.endQ, body.pendOf.get(id)!, n)) out.push(id);
    }
  }
  const after = stringCloseState(state);
  if (after === undefined) {
    // The close depends on the string's text: each closing token through the recognizer.
    for (let i = 0; i < body.closeIds.length; i++) {
      const id = body.closeIds[i]!;
      if (advanceBytes(state, table.bytes[id]!)) out.push(id);
    }
    return out;
  }
  if (after === null) return out;
  const tails = new Map<string, boolean>();
  for (const c of st.close) {
    const n = len + c.chars;
    if (n < alt.minLength || n > alt.maxLength) continue;
    const key = body.closeRestKey[c.k]!;
    let ok = tails.get(key);
    if (ok === undefined) tails.set(key, (ok = key.length === 0 || advanceBytes(after, body.closeRest[c.k]!) !== null));
    if (ok) out.push(body.closeIds[c.k]!);
  }
  return out;
}
