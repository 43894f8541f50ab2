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
// character count. From those, per state and length context, the body mask: the ids that stay
// inside the string and are allowed, and the closing tokens that fit, grouped by their bytes
// after the quote. A step checks one tail per group against what follows the string (the stack
// below it: the same state closes differently inside `{"a": …}` and at the end of an object);
// the finished list is cached per body mask and set of tails taken, and handed out as it is.
// Everything is cached on the token table, keyed by the automaton's content, so the same schema
// in the next request (a new Dfa object with the same states) starts warm; the length context is
// "free" once lengths decide nothing, so a new string of the same format finds most masks warm.
import { advanceBytes, pendingAllowed, pendingRange, readStringBody, stringCloseState, type PatternStringState, type RecognizerState, type StrScan } from './recognizer.ts';
import { dfaStep, type Dfa } from './regex.ts';
import { stringFeasible } from './schema.ts';

/** What this module needs from the token table (token-table.ts's TokenTable). */
export interface PatternTableView {
  readonly bytes: readonly (Uint8Array | null)[];
  readonly order: Int32Array;
  patternMasks?: PatternMaskCache;
}

/** Per table: the tokens' string-body readings, per automaton content its class index, and the masks. */
export interface PatternMaskCache {
  body: BodyTokens;
  byKey: Map<string, ClassIndex>;
  keyOf: WeakMap<Dfa, string>;
  /** Class indexes built so far (their ids key `masks`). */
  built: number;
  /** Body masks by `${index id}:${state}:${length context}`, least recently used first. */
  masks: Map<string, BodyMask>;
  /** Ids held by `masks` (bounded by MAX_MASK_IDS). */
  maskIds: number;
  /** A zeroed flag per id, lent to one mask computation at a time. */
  flags: Uint8Array;
}

/**
 * One pattern-string state's mask for one length context, without the decision on closing
 * tokens (that depends on what follows the string: the same automaton state inside `{"a": …}`
 * and at the end of an object closes differently). Per step, only the closing tokens are checked.
 */
interface BodyMask {
  /** The ids that stay inside the string and are allowed (packed, copied per step with slice). */
  allow: number[];
  /** Built on first need: every id that is neither in `allow` nor a closing token (the fixed part of the deny form). */
  denyBase: number[] | null;
  /** Closing tokens whose characters before the quote are valid and fit the lengths, by their bytes after the quote. */
  tails: { rest: Uint8Array; ids: number[] }[];
  /**
   * The finished masks by which tails the context takes ('0'/'1' per tail): handed out as they are
   * (shared, never modified), since allocating a fresh list of tens of thousands of ids costs
   * milliseconds by itself (V8's large-object space).
   */
  finals: Map<string, SharedMask>;
  /** In the cache (its lists count towards MAX_MASK_IDS). */
  cached: boolean;
}

/** A mask handed out by reference: callers must not modify its list. */
export type SharedMask = { readonly allow: readonly number[] } | { readonly deny: readonly number[] };

/** Lists handed out from the cache (alternativesMask in token-table.ts keys its own cache by them). */
const sharedIds = new WeakMap<readonly number[], number>();
let nextShared = 0;

/** A number naming a cached mask list for as long as it lives; undefined for a fresh list. */
export function sharedListId(list: readonly number[]): number | undefined {
  return sharedIds.get(list);
}

/** Marks a list as shared (cached: the same contents every time it is handed out). */
export function shareList(list: readonly number[]): void {
  if (!sharedIds.has(list)) sharedIds.set(list, nextShared++);
}

const MAX_FINALS = 8;

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
  /** Unique per table: the masks' cache key. */
  id: number;
  dfa: Dfa;
  /**
   * Most characters a token adds (a half-read tail counting one) plus the longest shortest way to
   * acceptance: further than this from maxLength (and past minLength), lengths decide nothing.
   */
  reachChars: number;
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
/** Ids kept in cached masks per table (8 bytes each: at most 32 MB; a format takes 10–50 masks of up to ~75,000 ids). */
const MAX_MASK_IDS = 4_000_000;

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

function buildIndex(d: Dfa, body: BodyTokens, id: number): ClassIndex {
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
  let maxChars = 0;
  for (const g of groups) maxChars = Math.max(maxChars, g.seq.length + (g.pend ? 1 : 0));
  for (const c of closeSeq) if (c) maxChars = Math.max(maxChars, c.length);
  let maxMin = 0;
  for (let q = 0; q < d.size; q++) maxMin = Math.max(maxMin, d.minRemain[q]!);
  return { id, dfa: d, reachChars: maxChars + maxMin, classes: C, delta, asciiClass, bounds, boundClass, groups, lcp, closeSeq, perState: new Map() };
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
function appendAll(out: number[], ids: Int32Array | readonly number[]): void {
  const start = out.length;
  out.length = start + ids.length;
  for (let i = 0; i < ids.length; i++) out[start + i] = ids[i]!;
}

function cacheOf(table: PatternTableView): PatternMaskCache {
  return (table.patternMasks ??= {
    body: bodyTokens(table),
    byKey: new Map(),
    keyOf: new WeakMap(),
    built: 0,
    masks: new Map(),
    maskIds: 0,
    flags: new Uint8Array(table.bytes.length),
  });
}

function indexFor(cache: PatternMaskCache, d: Dfa): ClassIndex {
  let key = cache.keyOf.get(d);
  if (key === undefined) cache.keyOf.set(d, (key = dfaKey(d)));
  let ix = cache.byKey.get(key);
  if (ix) {
    // Most recently used last (the map is the LRU order).
    cache.byKey.delete(key);
  } else {
    ix = buildIndex(d, cache.body, cache.built++);
    if (cache.byKey.size >= MAX_INDEXES) cache.byKey.delete(cache.byKey.keys().next().value!);
  }
  cache.byKey.set(key, ix);
  return ix;
}

const listOf = (f: SharedMask) => ('allow' in f ? f.allow : f.deny);
const finalsSize = (m: BodyMask) => {
  let n = 0;
  for (const f of m.finals.values()) n += listOf(f).length;
  return n;
};
const maskSize = (m: BodyMask) => m.allow.length + (m.denyBase?.length ?? 0) + m.tails.reduce((n, t) => n + t.ids.length, 0) + finalsSize(m);

/**
 * The body mask of a pattern-string state. What it depends on, and so its key: the automaton's
 * content (the class index), its state, and the lengths — the bounds and the length so far,
 * unless the string is past minLength and further than any token reaches from maxLength (then
 * "free": the same mask for every length, which is what keeps long strings warm).
 */
function bodyMaskFor(table: PatternTableView, ps: PatternStringState): { m: BodyMask; cache: PatternMaskCache } {
  const cache = cacheOf(table);
  const alt = ps.alt;
  const ix = indexFor(cache, alt.dfa!);
  const free = ps.len >= alt.minLength && ps.len + ix.reachChars <= alt.maxLength;
  const key = `${ix.id}:${ps.q}:${free ? 'free' : `${alt.minLength},${alt.maxLength},${ps.len}`}`;
  let m = cache.masks.get(key);
  if (m) {
    cache.masks.delete(key);
    cache.masks.set(key, m);
    return { m, cache };
  }
  let st = ix.perState.get(ps.q);
  if (!st) {
    st = walkState(ix, ps.q);
    if (ix.perState.size < MAX_STATES_CACHED) ix.perState.set(ps.q, st);
  }
  m = buildBodyMask(cache.body, st, ps, free);
  cache.masks.set(key, m);
  m.cached = true;
  cache.maskIds += maskSize(m);
  evict(cache);
  return { m, cache };
}

function evict(cache: PatternMaskCache): void {
  while (cache.maskIds > MAX_MASK_IDS && cache.masks.size > 1) {
    const [k, old] = cache.masks.entries().next().value!;
    cache.masks.delete(k);
    old.cached = false;
    cache.maskIds -= maskSize(old);
  }
}

function buildBodyMask(body: BodyTokens, st: StateTokens, ps: PatternStringState, free: boolean): BodyMask {
  const { alt, len } = ps;
  const allow: number[] = [];
  if (free) appendAll(allow, st.fullAll);
  else {
    for (const g of st.full) {
      const n = len + g.chars;
      if (n <= alt.maxLength && stringFeasible(alt, g.endQ, n)) appendAll(allow, g.ids);
    }
  }
  for (const g of st.partial) {
    const n = len + g.chars;
    if (!free && n > alt.maxLength) continue;
    for (let i = 0; i < g.ids.length; i++) {
      const id = g.ids[i]!;
      if (pendingAllowed(alt, g.endQ, body.pendOf.get(id)!, n)) allow.push(id);
    }
  }
  const byTail = new Map<string, { rest: Uint8Array; ids: number[] }>();
  for (const c of st.close) {
    const n = len + c.chars;
    if (!free && (n < alt.minLength || n > alt.maxLength)) continue;
    const key = body.closeRestKey[c.k]!;
    let t = byTail.get(key);
    if (!t) byTail.set(key, (t = { rest: body.closeRest[c.k]!, ids: [] }));
    t.ids.push(body.closeIds[c.k]!);
  }
  return { allow, denyBase: null, tails: [...byTail.values()], finals: new Map(), cached: false };
}

/**
 * The closing tokens allowed now, and which tails the context takes ('0'/'1' per tail; null when
 * each closing token was checked on its own: a key, a uniqueItems item).
 */
function closingAllowed(table: PatternTableView, body: BodyTokens, state: RecognizerState, m: BodyMask, out: number[]): string | null {
  const after = stringCloseState(state);
  if (after === undefined) {
    // The close depends on the string's text: each closing token through the recognizer.
    for (let i = 0; i < body.closeIds.length; i++) {
      const id = body.closeIds[i]!;
      if (advanceBytes(state, table.bytes[id]!)) out.push(id);
    }
    return null;
  }
  if (after === null) return '';
  let sig = '';
  for (const t of m.tails) {
    const ok = t.rest.length === 0 || advanceBytes(after, t.rest) !== null;
    sig += ok ? '1' : '0';
    if (ok) for (let i = 0; i < t.ids.length; i++) out.push(t.ids[i]!);
  }
  return sig;
}

/**
 * The allowed ids in a pattern-string state (exactly what advancing the recognizer would allow):
 * the cached body mask and the closing tokens whose bytes after the quote the recognizer takes.
 */
export function patternAllowedIds(table: PatternTableView, state: RecognizerState, ps: PatternStringState, out: number[]): number[] {
  const { m, cache } = bodyMaskFor(table, ps);
  appendAll(out, m.allow);
  closingAllowed(table, cache.body, state, m, out);
  return out;
}

/**
 * The same set as patternAllowedIds, as the shorter list: the allowed ids, or (an unanchored
 * pattern that takes most of the vocabulary) every refused id of the vocabulary. Warm (the same
 * state, length context and closing decisions as before), the cached list itself.
 */
export function patternMask(table: PatternTableView, state: RecognizerState, ps: PatternStringState): SharedMask {
  const { m, cache } = bodyMaskFor(table, ps);
  const body = cache.body;
  const close: number[] = [];
  const sig = closingAllowed(table, body, state, m, close);
  if (sig !== null) {
    const hit = m.finals.get(sig);
    if (hit) {
      m.finals.delete(sig);
      m.finals.set(sig, hit);
      return hit;
    }
  }
  const f = finishMask(cache, m, close);
  if (sig !== null) {
    const list = listOf(f);
    shareList(list);
    if (m.finals.size >= MAX_FINALS) {
      const [k, old] = m.finals.entries().next().value!;
      m.finals.delete(k);
      if (m.cached) cache.maskIds -= listOf(old).length;
    }
    m.finals.set(sig, f);
    if (m.cached) cache.maskIds += list.length;
    evict(cache);
  }
  return f;
}

function finishMask(cache: PatternMaskCache, m: BodyMask, close: number[]): SharedMask {
  const body = cache.body;
  const V = cache.flags.length;
  if (m.allow.length + close.length < V / 2) return { allow: m.allow.concat(close) };
  const flags = cache.flags;
  if (!m.denyBase) {
    for (const id of m.allow) flags[id] = 1;
    for (let i = 0; i < body.closeIds.length; i++) flags[body.closeIds[i]!] = 1;
    const base: number[] = [];
    for (let id = 0; id < V; id++) if (flags[id]) flags[id] = 0;
    else base.push(id);
    m.denyBase = base;
    if (m.cached) cache.maskIds += base.length;
  }
  const refused: number[] = [];
  for (const id of close) flags[id] = 1;
  for (let i = 0; i < body.closeIds.length; i++) {
    const id = body.closeIds[i]!;
    if (flags[id]) flags[id] = 0;
    else refused.push(id);
  }
  return { deny: m.denyBase.concat(refused) };
}
