// Incremental JSON recognizer driven by a compiled schema (schema.ts): a pushdown automaton over
// UTF-8 *bytes*. Bytes, not characters, because byte-level BPE tokens can end in the middle of a
// multibyte character: a token's bytes either keep the automaton alive or not, with no decoding.
//
// The state is immutable: a set of alternative stacks (anyOf branches progress in parallel), each
// a linked list of frames sharing tails. Advancing returns a new state and never changes the old
// one, so the token mask can walk a sorted vocabulary and reuse the state of a shared prefix
// (token-table.ts), and a rejected token costs nothing to undo.
//
// Guarantees the decoder relies on:
// - no dead ends: every state reached can still be completed to a valid document (keys are
//   offered only while the required ones can still follow, `,` only when another item/key may
//   come, lengths and counts are checked as they grow);
// - bounded loops: at most MAX_WS consecutive whitespace bytes between tokens of the document,
//   numbers have bounded digits, nesting inside "any JSON" values is bounded; only string
//   contents and array/object lengths are unbounded (max_tokens bounds them, as everywhere);
// - a `null` alternative means the document is complete and no byte may follow (the decoder stops).
import { dfaMatches, dfaStep, type Dfa } from './regex.ts';
import { containsFeasible, hitNode, missNode, setTextAcceptor, stringFeasible, type ArrayAlt, type LiteralAlt, type NumberAlt, type NumberBounds, type ObjectAlt, type StringAlt, type ValueNode } from './schema.ts';

/**
 * Whitespace between structural tokens, as llama.cpp's JSON grammar allows it: nothing, one
 * space, or a newline followed by at most MAX_WS spaces/tabs (indentation). No leading
 * whitespace before the document, no `\r`. Bounded so a model cannot spin on whitespace.
 */
export const MAX_WS = 20;
/** Nesting depth (frames) up to which "any JSON" containers may open. */
export const MAX_GENERIC_DEPTH = 32;
/** Alternatives kept per state (all are completable, so dropping extras only narrows the choice). */
const MAX_ALTS = 32;
const MAX_FRAC_DIGITS = 16;
const MAX_EXP_DIGITS = 2;

const enum K {
  Value,
  Obj,
  Key,
  Arr,
  Str,
  Num,
  Lit,
  Raw,
}

// Object phases.
const O_OPEN = 0; // after '{'
const O_COLON = 1; // after a key
const O_VALUE = 2; // a value is being read (ValueF above)
const O_AFTER = 3; // after a value
const O_COMMA = 4; // after ','
// Array phases.
const A_OPEN = 0;
const A_ITEM = 1;
const A_AFTER = 2;

interface ValueF {
  k: K.Value;
  node: ValueNode;
  ws: number;
}
interface ObjF {
  k: K.Obj;
  alt: ObjectAlt;
  ph: number;
  /** Index of the last declared property written (keys follow `props` order). */
  last: number;
  ws: number;
  /** Extra (additionalProperties) keys written, as raw JSON text. */
  extras: readonly string[];
  /** Schema of the value after the current key. */
  vnode: ValueNode | null;
  /** Keys written (minProperties/maxProperties). */
  n: number;
}
export interface StrScan {
  esc: number;
  need: number;
  lo: number;
  hi: number;
  /** The code point read so far (UTF-8 lead bits, or \u hex digits). */
  cp: number;
}
interface KeyF {
  k: K.Key;
  /** Declared properties whose key text still matches. */
  cands: readonly number[];
  pos: number;
  /** String scanner of a free (additionalProperties) key, null when no free key is possible. */
  free: StrScan | null;
  raw: string;
  /** Characters and automaton state of a free key whose names are constrained (freeKeys). */
  flen: number;
  fq: number;
}
interface ArrF {
  k: K.Arr;
  alt: ArrayAlt;
  ph: number;
  count: number;
  ws: number;
  /** uniqueItems: canonical JSON of the items so far, and the raw text of the current one. */
  seen: readonly string[] | null;
  cur: string;
  /** contains: items so far that count, and whether the current one is read as one that counts. */
  hits: number;
  hit: boolean;
}
interface StrF {
  k: K.Str;
  alt: StringAlt;
  /** Characters so far (an escape counts once). */
  len: number;
  s: StrScan;
  /** Automaton state (pattern/format), -1 without one. */
  q: number;
}
interface NumF {
  k: K.Num;
  alt: NumberAlt;
  ph: number;
  n: number;
  /** The number's text so far, kept only when it has bounds. */
  text: string;
}
interface LitF {
  k: K.Lit;
  texts: Uint8Array[];
  lo: number;
  hi: number;
  pos: number;
}
interface RawF {
  k: K.Raw;
  bytes: Uint8Array;
  pos: number;
}
type Frame = ValueF | ObjF | KeyF | ArrF | StrF | NumF | LitF | RawF;

export interface Stack {
  readonly f: Frame;
  readonly next: Stack | null;
  readonly depth: number;
}

/** Alternatives; `null` = a complete document. Never empty (an empty state is represented as null by callers). */
export type RecognizerState = readonly (Stack | null)[];

const isWs = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/**
 * Whitespace state after byte `b` (see MAX_WS), or null when not allowed. `ws`: 0 none yet,
 * -1 no (more) whitespace allowed, n ≥ 1 a newline and n-1 indentation bytes.
 */
function wsNext(ws: number, b: number): number | null {
  if (ws === 0) return b === 0x20 ? -1 : b === 0x0a ? 1 : null;
  if (ws > 0 && ws <= MAX_WS && (b === 0x20 || b === 0x09)) return ws + 1;
  return null;
}
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isHex = (b: number) => isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);

const push = (f: Frame, next: Stack | null): Stack => ({ f, next, depth: next ? next.depth + 1 : 1 });

/** The canonical JSON of an item's raw text (a number's text may carry the byte after it). */
function canonItem(raw: string): string {
  const text = utf8.decode(Uint8Array.from(raw, (c) => c.charCodeAt(0)));
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return JSON.stringify(JSON.parse(text.slice(0, -1)));
  }
}
const utf8 = new TextDecoder();

/**
 * The stack after a value on top of `rest` completed (null = document complete, undefined =
 * refused: a repeated item of a uniqueItems array).
 */
function finishValue(rest: Stack | null): Stack | null | undefined {
  if (rest === null) return null;
  const f = rest.f;
  if (f.k === K.Obj) return push({ ...f, ph: O_AFTER, ws: 0, vnode: null }, rest.next);
  if (f.k === K.Arr) {
    if (f.seen) {
      const c = canonItem(f.cur);
      if (f.seen.includes(c)) return undefined;
      return push({ ...f, ph: A_AFTER, count: f.count + 1, ws: 0, seen: [...f.seen, c], cur: '', hits: f.hits + (f.hit ? 1 : 0) }, rest.next);
    }
    return push({ ...f, ph: A_AFTER, count: f.count + 1, ws: 0, hits: f.hits + (f.hit ? 1 : 0) }, rest.next);
  }
  return rest; // a Raw suffix follows the value
}

const STR0: StrScan = { esc: 0, need: 0, lo: 0x80, hi: 0xbf, cp: 0 };
let scanOut: StrScan = STR0;
/** The code point completed by the last strByte call, or -1. */
let cpOut = -1;
const SIMPLE_ESCAPES: Record<number, number> = { 0x22: 0x22, 0x5c: 0x5c, 0x2f: 0x2f, 0x62: 8, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9 };
const hexVal = (b: number) => (b <= 0x39 ? b - 0x30 : (b | 0x20) - 0x57);

/**
 * One byte of a JSON string body. Returns -1 invalid, 0 consumed (no new character), 1 a new
 * character started, 2 the closing quote; the next scanner state is left in `scanOut`, and the
 * code point it completes (if any) in `cpOut`.
 */
function strByte(s: StrScan, b: number): number {
  cpOut = -1;
  if (s.need > 0) {
    if (b < s.lo || b > s.hi) return -1;
    const cp = (s.cp << 6) | (b & 0x3f);
    if (s.need === 1) {
      scanOut = STR0;
      cpOut = cp;
    } else scanOut = { esc: 0, need: s.need - 1, lo: 0x80, hi: 0xbf, cp };
    return 0;
  }
  if (s.esc === 1) {
    // After a backslash: one of the JSON escapes.
    const e = SIMPLE_ESCAPES[b];
    if (e !== undefined) {
      scanOut = STR0;
      cpOut = e;
      return 0;
    }
    if (b === 0x75) {
      scanOut = { esc: 5, need: 0, lo: 0x80, hi: 0xbf, cp: 0 };
      return 0;
    }
    return -1;
  }
  if (s.esc >= 2) {
    // \uXXXX: esc 5, 4, 3, 2 expect the 1st…4th hex digit; 6 is the 2nd after a 'd'. Surrogate
    // escapes (\uD800–\uDFFF) are refused: a lone one is not a character, and a pair would count
    // as two characters here but one for JSON Schema's minLength/maxLength. Raw UTF-8 writes
    // every character outside the BMP.
    if (!isHex(b)) return -1;
    let next: number;
    if (s.esc === 5 && (b === 0x64 || b === 0x44)) next = 6;
    else if (s.esc === 6) {
      if (b > 0x37) return -1; // 8-f after 'd' would be a surrogate
      next = 3;
    } else next = s.esc - 1;
    const cp = s.cp * 16 + hexVal(b);
    if (next <= 1) {
      scanOut = STR0;
      cpOut = cp;
    } else scanOut = { esc: next, need: 0, lo: 0x80, hi: 0xbf, cp };
    return 0;
  }
  if (b === 0x22) {
    scanOut = STR0;
    return 2;
  }
  if (b === 0x5c) {
    scanOut = { esc: 1, need: 0, lo: 0x80, hi: 0xbf, cp: 0 };
    return 1;
  }
  if (b < 0x20) return -1; // control characters must be escaped
  if (b < 0x80) {
    scanOut = STR0;
    cpOut = b;
    return 1;
  }
  // UTF-8 lead bytes, with the ranges that exclude overlong forms and surrogates.
  if (b >= 0xc2 && b <= 0xdf) scanOut = { esc: 0, need: 1, lo: 0x80, hi: 0xbf, cp: b & 0x1f };
  else if (b === 0xe0) scanOut = { esc: 0, need: 2, lo: 0xa0, hi: 0xbf, cp: 0 };
  else if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) scanOut = { esc: 0, need: 2, lo: 0x80, hi: 0xbf, cp: b & 0x0f };
  else if (b === 0xed) scanOut = { esc: 0, need: 2, lo: 0x80, hi: 0x9f, cp: 0x0d };
  else if (b === 0xf0) scanOut = { esc: 0, need: 3, lo: 0x90, hi: 0xbf, cp: 0 };
  else if (b >= 0xf1 && b <= 0xf3) scanOut = { esc: 0, need: 3, lo: 0x80, hi: 0xbf, cp: b & 0x07 };
  else if (b === 0xf4) scanOut = { esc: 0, need: 3, lo: 0x80, hi: 0x8f, cp: 4 };
  else return -1;
  return 1;
}

/**
 * Whether a character being read (a UTF-8 sequence or an escape, scanner `s`) can still be one
 * the automaton takes from state `q` into a state that can end with `len` characters.
 */
function pendingOk(alt: StringAlt, q: number, s: StrScan, len: number): boolean {
  let lo: number;
  let hi: number;
  if (s.need > 0) {
    const rem = 2 ** (6 * (s.need - 1));
    lo = ((s.cp << 6) | (s.lo & 0x3f)) * rem;
    hi = ((s.cp << 6) | (s.hi & 0x3f)) * rem + rem - 1;
  } else if (s.esc === 1 || s.esc === 5) [lo, hi] = [0, 0xffff];
  else if (s.esc === 6) [lo, hi] = [0xd000, 0xd7ff];
  else if (s.esc >= 2) {
    const rem = 16 ** (s.esc - 1);
    lo = s.cp * rem;
    hi = lo + rem - 1;
  } else return true;
  const t = alt.dfa!.trans[q]!;
  for (let k = 0; k < t.lo.length; k++) {
    const a = Math.max(lo, t.lo[k]!);
    const b = Math.min(hi, t.hi[k]!);
    if (a > b || (a >= 0xd800 && b <= 0xdfff)) continue;
    if (stringFeasible(alt, t.to[k]!, len)) return true;
  }
  return false;
}

let sLen = 0;
let sQ = -1;
/**
 * One byte of a string whose characters follow `alt` (lengths, automaton). -1 refused, 2 a valid
 * closing quote, 0 continues (next scanner in scanOut, length in sLen, automaton state in sQ).
 */
function strStep(alt: StringAlt, len: number, s: StrScan, q: number, b: number): number {
  const r = strByte(s, b);
  if (r < 0) return -1;
  if (r === 2) return len >= alt.minLength && (!alt.dfa || alt.dfa.accept[q] === 1) ? 2 : -1;
  let n = len;
  if (r === 1) {
    if (len >= alt.maxLength) return -1;
    n = len + 1;
  }
  let nq = q;
  if (alt.dfa) {
    if (cpOut >= 0) {
      nq = dfaStep(alt.dfa, q, cpOut);
      if (nq < 0 || !stringFeasible(alt, nq, n)) return -1;
    } else if (!pendingOk(alt, q, scanOut, n)) return -1;
  }
  sLen = n;
  sQ = nq;
  return 0;
}

const reqAfterCache = new WeakMap<ObjectAlt, Int32Array>();
/** Number of required properties after index j (j = -1: all). */
function reqAfter(alt: ObjectAlt, j: number): number {
  let c = reqAfterCache.get(alt);
  if (!c) {
    c = new Int32Array(alt.props.length + 1);
    for (let i = alt.props.length - 1; i >= 0; i--) c[i] = c[i + 1]! + (alt.props[i]!.required ? 1 : 0);
    reqAfterCache.set(alt, c);
  }
  return c[j + 1]!;
}

const freeAllowed = (alt: ObjectAlt) => alt.additional !== null || alt.patterns.length > 0;

/** Declared property j may be written as key number n+1 (counts stay satisfiable). */
function canTake(alt: ObjectAlt, n: number, j: number): boolean {
  if (n + 1 + reqAfter(alt, j) > alt.maxProps) return false;
  if (alt.minProps === 0 || freeAllowed(alt)) return true;
  return n + 1 + (alt.props.length - 1 - j) >= alt.minProps;
}

/** A free key may be written as key number n+1. */
const canTakeFree = (alt: ObjectAlt, n: number, last: number) => freeAllowed(alt) && n + 1 + reqAfter(alt, last) <= alt.maxProps;

/** A free key `raw` the object may take: not a declared property, not written before, with a value schema. */
const freeKeyOk = (alt: ObjectAlt, extras: readonly string[], raw: string) =>
  !declaredKeys(alt).has(raw) && !extras.includes(raw) && freeKeyValue(alt, raw) !== null;

function clashes(alt: ObjectAlt, extras: readonly string[], raw: string): boolean {
  for (const k of extras) if (k.startsWith(raw)) return true;
  for (const k of declaredKeys(alt)) if (k.startsWith(raw)) return true;
  return false;
}

/**
 * Whether the free key read so far (`raw`, its scanner and automaton state) can still end as a key
 * the object may take. Keys are checked for duplicates when they close, so without this lookahead a
 * key whose names are few (propertyNames `^[a-z]{1,4}$`, an enum) could be led into a name already
 * written and have no way on: a dead end (seen: a random model wrote `"frie"` twice). Searches
 * printable-ASCII completions; a prefix that no used key starts with is free at once, so the search
 * only walks the used keys' prefixes (bounded; a search over budget assumes a way exists).
 */
function freeKeyCanEnd(alt: ObjectAlt, extras: readonly string[], raw: string, flen: number, s: StrScan, q: number): boolean {
  if (!clashes(alt, extras, raw)) return true;
  const fk = alt.freeKeys;
  let budget = 4096;
  const search = (raw: string, flen: number, s: StrScan, q: number): boolean => {
    for (let b = 0x20; b <= 0x7e; b++) {
      if (b === 0x5c) continue;
      if (--budget < 0) return true;
      const r = fk ? strStep(fk, flen, s, q, b) : strByte(s, b);
      if (r === 2) {
        if (freeKeyOk(alt, extras, raw)) return true;
        continue;
      }
      if (r < 0) continue;
      const next = raw + String.fromCharCode(b);
      const [ns, nl, nq] = [scanOut, fk ? sLen : flen, fk ? sQ : q];
      if (!clashes(alt, extras, next) || search(next, nl, ns, nq)) return true;
    }
    return false;
  };
  return search(raw, flen, s, q);
}

/** Declared properties that may be written next: in order, not skipping a required one. */
function candidates(alt: ObjectAlt, last: number, n: number): number[] {
  const out: number[] = [];
  for (let j = last + 1; j < alt.props.length; j++) {
    if (canTake(alt, n, j)) out.push(j);
    if (alt.props[j]!.required) break;
  }
  return out;
}

function requiredRemaining(alt: ObjectAlt, last: number): boolean {
  return reqAfter(alt, last) > 0;
}

const canClose = (alt: ObjectAlt, last: number, n: number) => !requiredRemaining(alt, last) && n >= alt.minProps;

const declaredRaw = new WeakMap<ObjectAlt, Set<string>>();
/** Raw JSON key texts (without quotes) of the declared properties, as latin1 byte strings. */
function declaredKeys(alt: ObjectAlt): Set<string> {
  let s = declaredRaw.get(alt);
  if (!s) {
    s = new Set(alt.props.map((p) => String.fromCharCode(...p.key.subarray(0, p.key.length - 1))));
    declaredRaw.set(alt, s);
  }
  return s;
}

function mkLit(texts: Uint8Array[], lo: number, hi: number, pos: number, rest: Stack | null, out: (Stack | null)[]): void {
  // An item of a uniqueItems array: only while some literal it may still become is new.
  if (rest !== null && rest.f.k === K.Arr && rest.f.seen !== null && rest.f.seen.length > 0) {
    const seen = rest.f.seen;
    let fresh = false;
    for (let i = lo; i < hi && !fresh; i++) if (!seen.includes(utf8.decode(texts[i]!))) fresh = true;
    if (!fresh) return;
  }
  if (hi - lo === 1 && texts[lo]!.length === pos) {
    const after = finishValue(rest);
    if (after !== undefined) out.push(after);
  } else out.push(push({ k: K.Lit, texts, lo, hi, pos }, rest));
}

function startLiteral(alt: LiteralAlt, b: number, rest: Stack | null, out: (Stack | null)[]): void {
  const t = alt.texts;
  let lo = 0;
  while (lo < t.length && t[lo]![0]! < b) lo++;
  let hi = lo;
  while (hi < t.length && t[hi]![0] === b) hi++;
  if (hi > lo) mkLit(t, lo, hi, 1, rest, out);
}

function startNumber(alt: NumberAlt, b: number, rest: Stack | null, out: (Stack | null)[]): void {
  let f: NumF;
  const text = alt.bounds ? String.fromCharCode(b) : '';
  if (b === 0x2d) f = { k: K.Num, alt, ph: 0, n: 0, text };
  else if (b === 0x30) f = { k: K.Num, alt, ph: 2, n: 1, text };
  else if (b > 0x30 && b <= 0x39) f = { k: K.Num, alt, ph: 1, n: 1, text };
  else return;
  if (alt.bounds && !numAlive(alt, uniqueBounds(alt.bounds, rest), f)) return;
  out.push(push(f, rest));
}

/** The seen items of the uniqueItems array `under` (an item is being read above it), or null. */
function seenOf(under: Stack | null): readonly string[] | null {
  return under !== null && under.f.k === K.Arr && under.f.seen !== null && under.f.seen.length > 0 ? under.f.seen : null;
}

/** In a uniqueItems array, the bounds with the numbers already used excluded (so a number is refused before it can only end as a repeat). */
function uniqueBounds(B: NumberBounds, under: Stack | null): NumberBounds {
  const seen = seenOf(under);
  if (!seen) return B;
  const nums: number[] = [];
  for (const t of seen) {
    const v = JSON.parse(t) as unknown;
    if (typeof v === 'number') nums.push(v);
  }
  return nums.length ? { ...B, not: [...B.not, ...nums] } : B;
}

/**
 * In a uniqueItems array, whether the string item being read (at a character boundary) can still
 * end as a value not used yet: otherwise a repeat would be refused only at its closing quote, a
 * dead end. Follows the used values' continuations only; any other allowed character leads to a
 * new value.
 */
function freshString(alt: StringAlt, len: number, s: StrScan, q: number, under: Stack | null): boolean {
  const seen = seenOf(under);
  if (!seen || s !== STR0) return true;
  let p: string;
  try {
    p = JSON.parse(utf8.decode(Uint8Array.from((under!.f as ArrF).cur + '"', (c) => c.charCodeAt(0)))) as string;
  } catch {
    return true;
  }
  const cands = new Set<string>();
  for (const t of seen) {
    const v = JSON.parse(t) as unknown;
    if (typeof v === 'string' && v.startsWith(p)) cands.add(v.slice(p.length));
  }
  if (cands.size === 0) return true;
  const d = alt.dfa;
  const feasible = (q2: number, n: number) => (d ? stringFeasible(alt, q2, n) : n <= alt.maxLength);
  const dfs = (q1: number, n: number, w: string): boolean => {
    if (n >= alt.minLength && (!d || d.accept[q1] === 1) && !cands.has(w)) return true;
    if (n >= alt.maxLength) return false;
    // Next characters that keep following some used value.
    const follow = new Map<number, string>();
    for (const c of cands) if (c.length > w.length && c.startsWith(w)) follow.set(c.codePointAt(w.length)!, String.fromCodePoint(c.codePointAt(w.length)!));
    const ranges: [number, number, number][] = d ? Array.from(d.trans[q1]!.lo, (lo, k) => [lo, d.trans[q1]!.hi[k]!, d.trans[q1]!.to[k]!]) : [[0, 0x10ffff, -1]];
    for (const [lo, hi, to] of ranges) {
      if (!feasible(to, n + 1)) continue;
      let inside = 0;
      for (const cp of follow.keys()) if (cp >= lo && cp <= hi) inside++;
      const surrogates = Math.max(0, Math.min(hi, 0xdfff) - Math.max(lo, 0xd800) + 1);
      if (hi - lo + 1 - surrogates > inside) return true; // a character no used value continues with
      for (const [cp, ch] of follow) if (cp >= lo && cp <= hi && dfs(to, n + 1, w + ch)) return true;
    }
    return false;
  };
  return dfs(q, len, '');
}

/** Whether value ranges [x, y] (ends open when xo/yo) and the bounds share a value (a multiple). */
function hits(B: NumberBounds, integer: boolean, x: number, xo: boolean, y: number, yo: boolean): boolean {
  let L = x;
  let LO = xo;
  if (B.lo > L) [L, LO] = [B.lo, B.loEx];
  else if (B.lo === L) LO = LO || B.loEx;
  let U = y;
  let UO = yo;
  if (B.hi < U) [U, UO] = [B.hi, B.hiEx];
  else if (B.hi === U) UO = UO || B.hiEx;
  if (L > U) return false;
  if (integer) {
    const m = B.multipleOf;
    if (m > 1 && Math.ceil(L / m) * m > U) return false;
    if (B.not.length === 0) return true;
    // More multiples in [L, U] than excluded values among them.
    let ex = 0;
    for (const v of B.not) if (v >= L && v <= U) ex++;
    return Math.floor(U / m) - Math.ceil(L / m) + 1 > ex;
  }
  if (L < U) return true;
  return !LO && !UO && !B.not.includes(L);
}

/**
 * Whether the number being written (text, phase) can still end inside the bounds: the values
 * its completions reach form intervals — digit by digit, as llama.cpp's integer-range grammars do.
 */
function numAlive(alt: NumberAlt, B: NumberBounds, f: NumF): boolean {
  const neg = f.text.charCodeAt(0) === 0x2d;
  const body = neg ? f.text.slice(1) : f.text;
  const D = alt.maxDigits;
  const I = alt.integer;
  const test = (a: number, z: number, zOpen: boolean): boolean => (neg ? hits(B, I, -z, zOpen, -a, false) : hits(B, I, a, false, z, zOpen));
  switch (f.ph) {
    case 0:
      return I ? test(0, 10 ** D - 1, false) : test(0, 10 ** D, true);
    case 1: {
      const P = Number(body);
      for (let j = 0; j <= D - f.n; j++) {
        const p = 10 ** j;
        if (I ? test(P * p, P * p + p - 1, false) : test(P * p, (P + 1) * p, true)) return true;
      }
      return false;
    }
    case 2:
      return I ? test(0, 0, false) : test(0, 1, true);
    case 3: {
      const v = Number(body.slice(0, -1));
      return test(v, v + 1, true);
    }
    case 4: {
      const v = Number(body);
      return f.n < MAX_FRAC_DIGITS ? test(v, v + 10 ** -f.n, true) : test(v, v, false);
    }
    default:
      return false;
  }
}

/** A complete bounded number's value is inside the bounds (exactly, as a validator parses it). */
function numFinalOk(B: NumberBounds, text: string): boolean {
  const v = Number(text);
  if (v < B.lo || (v === B.lo && B.loEx) || v > B.hi || (v === B.hi && B.hiEx)) return false;
  if (B.not.length && B.not.includes(v)) return false;
  return B.multipleOf <= 1 || v % B.multipleOf === 0;
}

/** A value starts with byte `b` (not whitespace) where `rest` continues after it. */
function startValue(node: ValueNode, b: number, rest: Stack | null, out: (Stack | null)[]): void {
  const depth = rest ? rest.depth : 0;
  for (const alt of node.alts) {
    switch (alt.kind) {
      case 'object':
        if (b === 0x7b && !(alt.generic && depth >= MAX_GENERIC_DEPTH)) {
          out.push(push({ k: K.Obj, alt, ph: O_OPEN, last: -1, ws: 0, extras: [], vnode: null, n: 0 }, rest));
        }
        break;
      case 'array':
        if (b === 0x5b && !(alt.generic && depth >= MAX_GENERIC_DEPTH)) {
          out.push(push({ k: K.Arr, alt, ph: A_OPEN, count: 0, ws: 0, seen: alt.unique ? [] : null, cur: '', hits: 0, hit: false }, rest));
        }
        break;
      case 'string':
        if (b === 0x22 && freshString(alt, 0, STR0, alt.dfa ? alt.dfa.start : -1, rest)) out.push(push({ k: K.Str, alt, len: 0, s: STR0, q: alt.dfa ? alt.dfa.start : -1 }, rest));
        break;
      case 'number':
        startNumber(alt, b, rest, out);
        break;
      case 'literal':
        startLiteral(alt, b, rest, out);
        break;
    }
  }
}

/** Whether a number in phase `ph` is a complete JSON number. */
const numComplete = (ph: number) => ph === 1 || ph === 2 || ph === 4 || ph === 7;

function stepNumber(f: NumF, st: Stack, b: number, out: (Stack | null)[]): void {
  const rest = st.next;
  let nf: NumF | null = null;
  const d = isDigit(b);
  switch (f.ph) {
    case 0: // after '-'
      if (b === 0x30) nf = { ...f, ph: 2, n: 1 };
      else if (d) nf = { ...f, ph: 1, n: 1 };
      break;
    case 1: // integer digits
      if (d) nf = f.n < f.alt.maxDigits ? { ...f, n: f.n + 1 } : null;
      else if (!f.alt.integer && b === 0x2e) nf = { ...f, ph: 3, n: 0 };
      else if (!f.alt.integer && !f.alt.bounds && (b === 0x65 || b === 0x45)) nf = { ...f, ph: 5, n: 0 };
      break;
    case 2: // a leading 0
      if (!f.alt.integer && b === 0x2e) nf = { ...f, ph: 3, n: 0 };
      else if (!f.alt.integer && !f.alt.bounds && (b === 0x65 || b === 0x45)) nf = { ...f, ph: 5, n: 0 };
      break;
    case 3: // after '.'
      if (d) nf = { ...f, ph: 4, n: 1 };
      break;
    case 4: // fraction digits
      if (d) nf = f.n < MAX_FRAC_DIGITS ? { ...f, n: f.n + 1 } : null;
      else if (!f.alt.bounds && (b === 0x65 || b === 0x45)) nf = { ...f, ph: 5, n: 0 };
      break;
    case 5: // after 'e'
      if (b === 0x2b || b === 0x2d) nf = { ...f, ph: 6 };
      else if (d) nf = { ...f, ph: 7, n: 1 };
      break;
    case 6: // after the exponent sign
      if (d) nf = { ...f, ph: 7, n: 1 };
      break;
    case 7:
      if (d && f.n < MAX_EXP_DIGITS) nf = { ...f, n: f.n + 1 };
      break;
  }
  if (nf) {
    if (f.alt.bounds) {
      nf.text = f.text + String.fromCharCode(b);
      if (!numAlive(f.alt, uniqueBounds(f.alt.bounds, rest), nf)) return;
    }
    out.push(push(nf, rest));
    return;
  }
  // Not part of the number: if the number is complete, the byte belongs to what follows it.
  if (!d && numComplete(f.ph) && (!f.alt.bounds || numFinalOk(f.alt.bounds, f.text))) {
    const after = finishValue(rest);
    if (after) step(after, b, out);
  }
}

function stepObject(f: ObjF, st: Stack, b: number, out: (Stack | null)[]): void {
  const rest = st.next;
  const ws = isWs(b);
  switch (f.ph) {
    case O_OPEN:
    case O_COMMA:
      if (ws) {
        const w = wsNext(f.ws, b);
        if (w !== null) out.push(push({ ...f, ws: w }, rest));
      } else if (b === 0x22) {
        const cands = candidates(f.alt, f.last, f.n);
        const fk = f.alt.freeKeys;
        const fq = fk?.dfa ? fk.dfa.start : -1;
        const free = canTakeFree(f.alt, f.n, f.last) && freeKeyCanEnd(f.alt, f.extras, '', 0, STR0, fq) ? STR0 : null;
        if (cands.length > 0 || free) out.push(push({ k: K.Key, cands, pos: 0, free, raw: '', flen: 0, fq }, st));
      } else if (b === 0x7d && f.ph === O_OPEN && canClose(f.alt, f.last, f.n)) {
        const after = finishValue(rest);
        if (after !== undefined) out.push(after);
      }
      return;
    case O_COLON:
      if (ws) {
        const w = wsNext(f.ws, b);
        if (w !== null) out.push(push({ ...f, ws: w }, rest));
      } else if (b === 0x3a) {
        out.push(push({ k: K.Value, node: f.vnode!, ws: 0 }, push({ ...f, ph: O_VALUE, ws: 0 }, rest)));
      }
      return;
    case O_AFTER:
      if (ws) {
        const w = wsNext(f.ws, b);
        if (w !== null) out.push(push({ ...f, ws: w }, rest));
      } else if (b === 0x2c) {
        const another =
          candidates(f.alt, f.last, f.n).length > 0 ||
          (canTakeFree(f.alt, f.n, f.last) && freeKeyCanEnd(f.alt, f.extras, '', 0, STR0, f.alt.freeKeys?.dfa ? f.alt.freeKeys.dfa.start : -1));
        if (another) out.push(push({ ...f, ph: O_COMMA, ws: 0 }, rest));
      } else if (b === 0x7d && canClose(f.alt, f.last, f.n)) {
        const after = finishValue(rest);
        if (after !== undefined) out.push(after);
      }
      return;
  }
}

function stepKey(f: KeyF, st: Stack, b: number, out: (Stack | null)[]): void {
  const objStack = st.next!;
  const obj = objStack.f as ObjF;
  const props = obj.alt.props;
  let cont: number[] | null = null;
  for (const j of f.cands) {
    const key = props[j]!.key;
    if (key[f.pos] !== b) continue;
    if (f.pos + 1 === key.length) {
      out.push(push({ ...obj, ph: O_COLON, last: j, ws: 0, vnode: props[j]!.value, n: obj.n + 1 }, objStack.next));
    } else (cont ??= []).push(j);
  }
  let free: StrScan | null = null;
  let raw = f.raw;
  let flen = f.flen;
  let fq = f.fq;
  if (f.free) {
    const fk = obj.alt.freeKeys;
    const r = fk ? strStep(fk, f.flen, f.free, f.fq, b) : strByte(f.free, b);
    if (r === 2) {
      // A free key is complete: it must be new and not a declared property's name.
      if (!declaredKeys(obj.alt).has(raw) && !obj.extras.includes(raw)) {
        const vnode = freeKeyValue(obj.alt, raw);
        if (vnode) out.push(push({ ...obj, ph: O_COLON, ws: 0, vnode, extras: [...obj.extras, raw], n: obj.n + 1 }, objStack.next));
      }
    } else if (r >= 0) {
      free = scanOut;
      raw += String.fromCharCode(b);
      if (fk) [flen, fq] = [sLen, sQ];
      if (!freeKeyCanEnd(obj.alt, obj.extras, raw, flen, free, fq)) free = null;
    }
  }
  if (cont || free) out.push(push({ k: K.Key, cands: cont ?? [], pos: f.pos + 1, free, raw, flen, fq }, objStack));
}

/** The value schema of a new key (raw JSON text, latin1): its patternProperties or additionalProperties. */
function freeKeyValue(alt: ObjectAlt, raw: string): ValueNode | null {
  if (alt.patterns.length === 0) return alt.additional;
  const name = JSON.parse('"' + utf8.decode(Uint8Array.from(raw, (c) => c.charCodeAt(0))) + '"') as string;
  for (const p of alt.patterns) if (dfaMatches(p.dfa, name)) return p.value;
  return alt.additional;
}

function stepArray(f: ArrF, st: Stack, b: number, out: (Stack | null)[]): void {
  const rest = st.next;
  if (isWs(b)) {
    const w = f.ph === A_OPEN || f.ph === A_AFTER ? wsNext(f.ws, b) : null;
    if (w !== null) out.push(push({ ...f, ws: w }, rest));
    return;
  }
  if (f.ph === A_OPEN) {
    if (b === 0x5d) {
      if (f.alt.minItems === 0 && (!f.alt.contains || f.alt.contains.min === 0)) {
        const after = finishValue(rest);
        if (after !== undefined) out.push(after);
      }
    } else if (f.alt.maxItems > 0) {
      const cur = f.seen ? String.fromCharCode(b) : '';
      for (const [item, hit] of nextItems(f)) startValue(item, b, push({ ...f, ph: A_ITEM, ws: 0, cur, hit }, rest), out);
    }
  } else if (f.ph === A_AFTER) {
    if (b === 0x2c) {
      if (f.count < f.alt.maxItems) {
        for (const [item, hit] of nextItems(f)) {
          if (!(f.seen && !hasFreshValue(item, f.seen))) out.push(push({ k: K.Value, node: item, ws: 0 }, push({ ...f, ph: A_ITEM, ws: 0, cur: '', hit }, rest)));
        }
      }
    } else if (b === 0x5d && f.count >= f.alt.minItems && (!f.alt.contains || f.hits >= f.alt.contains.min)) {
      const after = finishValue(rest);
      if (after !== undefined) out.push(after);
    }
  }
}

const itemNode = (alt: ArrayAlt, i: number): ValueNode | null => (i < alt.prefix.length ? alt.prefix[i]! : alt.items);

/**
 * The schemas the next item may be read as, with whether it counts for `contains`. With
 * `contains`, an item is read both as one that counts and as one that does not (parallel stacks),
 * each only while the array can still meet its counts afterwards.
 */
function nextItems(f: ArrF): [ValueNode, boolean][] {
  const a = f.alt;
  const c = a.contains;
  if (!c) {
    const item = itemNode(a, f.count);
    return item ? [[item, false]] : [];
  }
  const out: [ValueNode, boolean][] = [];
  const h = hitNode(c, f.count);
  if (h && f.hits < c.max && containsFeasible(a, f.count + 1, f.hits + 1)) out.push([h, true]);
  const m = missNode(c, f.count);
  if (m && containsFeasible(a, f.count + 1, f.hits)) out.push([m, false]);
  return out;
}

/** Whether an item schema has a value not in `seen` (enums and booleans are finite). */
function hasFreshValue(node: ValueNode, seen: readonly string[]): boolean {
  for (const a of node.alts) {
    if (a.kind !== 'literal') return true;
    for (const t of a.texts) if (!seen.includes(utf8.decode(t))) return true;
  }
  return false;
}

/** Advances one stack by one byte, appending the resulting alternatives to `out`. */
function step(st0: Stack, b: number, out: (Stack | null)[]): void {
  let st = st0;
  const f = st.f;
  // Inside an item of a uniqueItems array (scalars only: one frame above it), record its text.
  const under = st.next;
  if (under !== null && under.f.k === K.Arr && under.f.seen !== null && under.f.ph === A_ITEM && f.k !== K.Arr && f.k !== K.Obj) {
    st = { f, next: push({ ...under.f, cur: under.f.cur + String.fromCharCode(b) }, under.next), depth: st.depth };
  }
  switch (f.k) {
    case K.Value:
      if (isWs(b)) {
        const w = wsNext(f.ws, b);
        if (w !== null) out.push(push({ ...f, ws: w }, st.next));
      } else startValue(f.node, b, st.next, out);
      return;
    case K.Obj:
      return stepObject(f, st, b, out);
    case K.Key:
      return stepKey(f, st, b, out);
    case K.Arr:
      return stepArray(f, st, b, out);
    case K.Str: {
      if (f.alt.dfa) {
        const r = strStep(f.alt, f.len, f.s, f.q, b);
        if (r === 2) {
          const after = finishValue(st.next);
          if (after !== undefined) out.push(after);
        } else if (r === 0 && freshString(f.alt, sLen, scanOut, sQ, st.next)) out.push(push({ k: K.Str, alt: f.alt, len: sLen, s: scanOut, q: sQ }, st.next));
        return;
      }
      const r = strByte(f.s, b);
      if (r === 2) {
        if (f.len >= f.alt.minLength) {
          const after = finishValue(st.next);
          if (after !== undefined) out.push(after);
        }
      } else if (r === 1) {
        if (f.len < f.alt.maxLength && freshString(f.alt, f.len + 1, scanOut, -1, st.next)) out.push(push({ k: K.Str, alt: f.alt, len: f.len + 1, s: scanOut, q: -1 }, st.next));
      } else if (r === 0) {
        if (freshString(f.alt, f.len, scanOut, -1, st.next)) out.push(push({ k: K.Str, alt: f.alt, len: f.len, s: scanOut, q: -1 }, st.next));
      }
      return;
    }
    case K.Num:
      return stepNumber(f, st, b, out);
    case K.Lit: {
      const { texts, pos } = f;
      let lo = f.lo;
      while (lo < f.hi && (texts[lo]!.length <= pos || texts[lo]![pos]! < b)) lo++;
      let hi = lo;
      while (hi < f.hi && texts[hi]![pos] === b) hi++;
      if (hi > lo) mkLit(texts, lo, hi, pos + 1, st.next, out);
      // A complete literal (sorted first: it is a prefix of the others) ends before this byte.
      if (texts[f.lo]!.length === pos) {
        const after = finishValue(st.next);
        if (after) step(after, b, out);
      }
      return;
    }
    case K.Raw:
      if (f.bytes[f.pos] === b) {
        if (f.pos + 1 === f.bytes.length) out.push(st.next);
        else out.push(push({ k: K.Raw, bytes: f.bytes, pos: f.pos + 1 }, st.next));
      }
      return;
  }
}

/**
 * When every alternative of the state reads a string body at a character boundary (a string
 * value, or a key that may be any new name), the number of characters that may still be added
 * (Infinity without maxLength); otherwise -1. Then every token that stays inside the string and
 * adds at most that many characters is allowed, whatever came before (token-table's fast path).
 */
export function openStringCapacity(state: RecognizerState): number {
  // With several alternatives (anyOf branches) all inside strings, a token that stays inside
  // keeps every branch with room for it alive: the largest capacity decides.
  let cap = -1;
  for (const st of state) {
    if (st === null) return -1;
    const f = st.f;
    let c: number;
    if (f.k === K.Str) c = f.s === STR0 && (!f.alt.dfa || f.alt.dfa.universal[f.q] === 1) && !seenOf(st.next) ? f.alt.maxLength - f.len : -1;
    else if (f.k === K.Key) {
      const fk = (st.next!.f as ObjF).alt.freeKeys;
      c = f.free === STR0 && (!fk || (fk.dfa!.universal[f.fq] === 1 && fk.maxLength === Infinity)) ? Infinity : -1;
    }
    else c = -1;
    if (c < 0) return -1;
    if (c > cap) cap = c;
  }
  return cap;
}

/**
 * Classifies bytes read from a string body at a character boundary: the number of characters
 * they start if they all stay inside the string (possibly ending inside a character or escape),
 * 'close' if an unescaped quote ends the string somewhere, 'invalid' otherwise.
 */
export function scanStringBody(bytes: Uint8Array): number | 'close' | 'invalid' {
  let s = STR0;
  let chars = 0;
  for (let i = 0; i < bytes.length; i++) {
    const r = strByte(s, bytes[i]!);
    if (r < 0) return 'invalid';
    if (r === 2) return 'close';
    if (r === 1) chars++;
    s = scanOut;
  }
  return chars;
}

/** A state reading a pattern/format string (or a constrained free key) at a character boundary. */
export interface PatternStringState {
  alt: StringAlt;
  q: number;
  len: number;
}

/** The single string-with-automaton frame the state is in, or null (token-table's fast path). */
export function patternStringState(state: RecognizerState): PatternStringState | null {
  if (state.length !== 1 || state[0] === null) return null;
  const st = state[0]!;
  const f = st.f;
  if (f.k === K.Str && f.alt.dfa && f.s === STR0 && !seenOf(st.next)) return { alt: f.alt, q: f.q, len: f.len };
  if (f.k === K.Key && f.cands.length === 0 && f.free === STR0) {
    const obj = st.next!.f as ObjF;
    // A key that a name already written (or declared) starts with may be led into that name and
    // refused by its text (freeKeyCanEnd), which the automaton state does not know: not this path.
    if (obj.alt.freeKeys && !clashes(obj.alt, obj.extras, f.raw)) return { alt: obj.alt.freeKeys, q: f.fq, len: f.flen };
  }
  return null;
}

/** How a token's bytes read inside a string body, from a character boundary (pattern-mask.ts). */
export interface StringBodyReading {
  kind: 'open' | 'close' | 'invalid';
  /** The complete characters read (before the closing quote for 'close'). */
  cps: number[];
  /** 'open': the scanner when the token ends inside a character or escape, else null. */
  pend: StrScan | null;
  /** 'close': index of the byte after the closing quote. */
  closeAt: number;
}

export function readStringBody(bytes: Uint8Array): StringBodyReading {
  let s = STR0;
  const cps: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const r = strByte(s, bytes[i]!);
    if (r < 0) return { kind: 'invalid', cps, pend: null, closeAt: -1 };
    if (r === 2) return { kind: 'close', cps, pend: null, closeAt: i + 1 };
    if (cpOut >= 0) cps.push(cpOut);
    s = scanOut;
  }
  return { kind: 'open', cps, pend: s === STR0 ? null : s, closeAt: -1 };
}

/** A character being read (scanner `s`) can still take the string from state q to one that ends with `len` characters. */
export function pendingAllowed(alt: StringAlt, q: number, s: StrScan, len: number): boolean {
  return pendingOk(alt, q, s, len);
}

/** The code point range a half-read character or escape can still become (surrogates aside). */
export function pendingRange(s: StrScan): [number, number] {
  if (s.need > 0) {
    const rem = 2 ** (6 * (s.need - 1));
    return [((s.cp << 6) | (s.lo & 0x3f)) * rem, ((s.cp << 6) | (s.hi & 0x3f)) * rem + rem - 1];
  }
  if (s.esc === 1 || s.esc === 5) return [0, 0xffff];
  if (s.esc === 6) return [0xd000, 0xd7ff];
  const rem = 16 ** (s.esc - 1);
  return [s.cp * rem, s.cp * rem + rem - 1];
}

/**
 * For a state inside one pattern string value (patternStringState's string case): the state
 * after its closing quote, when the characters so far make a valid string — what a closing token's
 * remaining bytes continue from. null when closing is refused there; undefined when the close
 * depends on the string's text (a key, or an item of a uniqueItems array): check tokens one by one.
 */
export function stringCloseState(state: RecognizerState): RecognizerState | null | undefined {
  const st = state[0];
  if (state.length !== 1 || !st || st.f.k !== K.Str) return undefined;
  const under = st.next;
  if (under !== null && under.f.k === K.Arr && under.f.seen !== null) return undefined;
  const after = finishValue(under);
  return after === undefined ? null : [after];
}

/** Advances a state by one byte; null when the byte is not allowed. */
export function advanceByte(state: RecognizerState, b: number): RecognizerState | null {
  const out: (Stack | null)[] = [];
  for (const st of state) if (st !== null) step(st, b, out);
  if (out.length === 0) return null;
  // One `null` (complete) is enough; keep the others bounded.
  let sawDone = false;
  const res: (Stack | null)[] = [];
  for (const s of out) {
    if (s === null) {
      if (sawDone) continue;
      sawDone = true;
    }
    if (res.length < MAX_ALTS) res.push(s);
  }
  return res;
}

/** Advances by several bytes; null as soon as one is not allowed. */
export function advanceBytes(state: RecognizerState, bytes: Uint8Array, start = 0, end = bytes.length): RecognizerState | null {
  let s: RecognizerState | null = state;
  for (let i = start; i < end && s; i++) s = advanceByte(s, bytes[i]!);
  return s;
}

function stackCanEnd(s: Stack | null): boolean {
  if (s === null) return true;
  const f = s.f;
  if (f.k === K.Num) return numComplete(f.ph) && (!f.alt.bounds || numFinalOk(f.alt.bounds, f.text)) && finishValue(s.next) === null;
  if (f.k === K.Lit) return f.texts[f.lo]!.length === f.pos && finishValue(s.next) === null;
  return false;
}

/** The document may end here (EOS allowed). */
export function canEnd(state: RecognizerState): boolean {
  return state.some(stackCanEnd);
}

/** The document is complete and nothing may follow: generation must stop. */
export function isDone(state: RecognizerState): boolean {
  return state.every((s) => s === null);
}

export interface InitialOptions {
  /** Literal text before the JSON value (e.g. `<tool_call>\n`). */
  prefix?: string;
  /** Literal text after it (e.g. `\n</tool_call>`). */
  suffix?: string;
}

const enc = new TextEncoder();

export function initialState(node: ValueNode, opts: InitialOptions = {}): RecognizerState {
  let st: Stack | null = null;
  if (opts.suffix) st = push({ k: K.Raw, bytes: enc.encode(opts.suffix), pos: 0 }, st);
  st = push({ k: K.Value, node, ws: -1 }, st);
  if (opts.prefix) st = push({ k: K.Raw, bytes: enc.encode(opts.prefix), pos: 0 }, st);
  return [st];
}

/** Convenience for tests and callers with text: feeds the UTF-8 bytes of `text`. */
export function advanceText(state: RecognizerState, text: string): RecognizerState | null {
  return advanceBytes(state, enc.encode(text));
}

// The schema compiler filters enum values by the other keywords with the recognizer itself.
setTextAcceptor((node, text) => {
  const s = advanceText(initialState(node), text);
  return s !== null && canEnd(s);
});
