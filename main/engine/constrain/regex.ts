// JSON Schema `pattern` (and `format`, see formats.ts) as a deterministic automaton over Unicode
// code points, for the string recognizer. ECMAScript syntax (the `u` flag, as ajv compiles
// patterns): alternation, groups (capturing, non-capturing, named), classes and ranges, escapes
// (\d \w \s and their negations, \t \n \r \v \f \0 \xHH \uHHHH \u{…}, escaped punctuation), `.`,
// quantifiers ? * + {m} {m,} {m,n} (lazy forms match the same strings), anchors ^ $, and
// lookahead (?= ) (?! ) outside repetitions — rewritten into intersections/differences of
// automata, so zod's date-time/duration/hostname patterns work. Refused (RegexError → 400):
// backreferences, lookbehind, word boundaries, lookahead inside a repetition, automata over the
// size limits. Like RegExp.prototype.test, an unanchored pattern matches anywhere in the string.
//
// The result is a trimmed DFA: every state can still reach an accepting state, so the recognizer
// offers no dead ends; per state the shortest and longest way to acceptance (min/maxLength).

export class RegexError extends Error {
  override name = 'RegexError';
}

/** Unicode scalar values: what a JSON string can hold (the recognizer refuses surrogate escapes). */
const MAX_CP = 0x10ffff;
type Ranges = number[]; // flat [lo0, hi0, lo1, hi1, …], sorted, disjoint, non-adjacent

function normalize(r: Ranges): Ranges {
  const pairs: [number, number][] = [];
  for (let i = 0; i < r.length; i += 2) pairs.push([r[i]!, r[i + 1]!]);
  pairs.sort((a, b) => a[0] - b[0]);
  const out: Ranges = [];
  for (const [lo, hi] of pairs) {
    if (out.length && lo <= out[out.length - 1]! + 1) out[out.length - 1] = Math.max(out[out.length - 1]!, hi);
    else out.push(lo, hi);
  }
  return out;
}

function negate(r: Ranges): Ranges {
  const n = normalize(r);
  const out: Ranges = [];
  let next = 0;
  for (let i = 0; i < n.length; i += 2) {
    if (n[i]! > next) out.push(next, n[i]! - 1);
    next = n[i + 1]! + 1;
  }
  if (next <= MAX_CP) out.push(next, MAX_CP);
  return out;
}

const DIGIT: Ranges = [0x30, 0x39];
const WORD: Ranges = [0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a];
// ECMAScript WhiteSpace + LineTerminator.
const SPACE: Ranges = normalize([9, 13, 0x20, 0x20, 0xa0, 0xa0, 0x1680, 0x1680, 0x2000, 0x200a, 0x2028, 0x2029, 0x202f, 0x202f, 0x205f, 0x205f, 0x3000, 0x3000, 0xfeff, 0xfeff]);
const DOT: Ranges = negate([0x0a, 0x0a, 0x0d, 0x0d, 0x2028, 0x2029]);
export const ALL: Ranges = [0, MAX_CP];

type Node =
  | { t: 'chars'; r: Ranges }
  | { t: 'seq'; items: Node[] }
  | { t: 'alt'; alts: Node[] }
  | { t: 'rep'; node: Node; min: number; max: number }
  | { t: 'bol' }
  | { t: 'eol' }
  | { t: 'look'; neg: boolean; node: Node }
  | { t: 'dfa'; dfa: Dfa };

const EMPTY: Node = { t: 'seq', items: [] };
const MAX_REPEAT = 1000;

// ------------------------------------------------------------------------------------- parser

function parse(src: string): Node {
  const cps = Array.from(src, (c) => c.codePointAt(0)!);
  let i = 0;
  const peek = () => cps[i];
  const err = (m: string): never => {
    throw new RegexError(`pattern ${JSON.stringify(src.slice(0, 60))}: ${m}`);
  };
  const isHexCp = (c: number | undefined) => c !== undefined && /[0-9a-fA-F]/.test(String.fromCodePoint(c));
  function hex(n: number): number {
    let v = 0;
    for (let k = 0; k < n; k++) {
      const c = cps[i];
      if (!isHexCp(c)) err('bad hexadecimal escape');
      v = v * 16 + parseInt(String.fromCodePoint(c!), 16);
      i++;
    }
    return v;
  }

  /** After a backslash: a class (ranges) or one code point. */
  function escape(inClass: boolean): Ranges | number {
    const c = cps[i++];
    if (c === undefined) return err('trailing backslash');
    const ch = String.fromCodePoint(c);
    switch (ch) {
      case 'd': return DIGIT;
      case 'D': return negate(DIGIT);
      case 'w': return WORD;
      case 'W': return negate(WORD);
      case 's': return SPACE;
      case 'S': return negate(SPACE);
      case 't': return 9;
      case 'n': return 10;
      case 'r': return 13;
      case 'v': return 11;
      case 'f': return 12;
      case '0':
        if (cps[i] !== undefined && cps[i]! >= 0x30 && cps[i]! <= 0x39) return err('octal escapes are not supported');
        return 0;
      case 'x': return hex(2);
      case 'u':
        if (peek() === 0x7b) {
          i++;
          let v = 0;
          let n = 0;
          while (isHexCp(peek())) {
            v = v * 16 + parseInt(String.fromCodePoint(cps[i++]!), 16);
            if (++n > 6) err('bad \\u{…} escape');
          }
          if (peek() !== 0x7d || n === 0 || v > MAX_CP) err('bad \\u{…} escape');
          i++;
          return v;
        } else {
          const v = hex(4);
          // A surrogate pair written as two escapes is one code point.
          if (v >= 0xd800 && v <= 0xdbff && cps[i] === 0x5c && cps[i + 1] === 0x75) {
            const save = i;
            i += 2;
            const lo = hex(4);
            if (lo >= 0xdc00 && lo <= 0xdfff) return 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
            i = save;
          }
          return v;
        }
      case 'c': return err('\\c escapes are not supported');
      case 'b':
        if (inClass) return 8;
        return err('word boundaries (\\b) are not supported');
      case 'B': return err('word boundaries (\\B) are not supported');
      case 'k': return err('backreferences are not supported');
      case 'p':
      case 'P': return err('Unicode property escapes (\\p{…}) are not supported');
      default:
        if (c >= 0x31 && c <= 0x39) return err('backreferences are not supported');
        if (/[A-Za-z0-9]/.test(ch)) return err(`unknown escape \\${ch}`);
        return c; // escaped punctuation: itself
    }
  }

  function classAtom(): Ranges | number {
    const c = cps[i++]!;
    if (c === 0x5c) return escape(true);
    return c;
  }

  function charClass(): Ranges {
    // after '['
    let neg = false;
    if (peek() === 0x5e) {
      neg = true;
      i++;
    }
    const r: Ranges = [];
    while (true) {
      const c = peek();
      if (c === undefined) err('unterminated character class');
      if (c === 0x5d) {
        i++;
        break;
      }
      const a = classAtom();
      if (peek() === 0x2d && cps[i + 1] !== undefined && cps[i + 1] !== 0x5d) {
        i++;
        const b = classAtom();
        if (typeof a !== 'number' || typeof b !== 'number') err('a class escape cannot bound a range');
        if ((a as number) > (b as number)) err('range out of order in character class');
        r.push(a as number, b as number);
      } else if (typeof a === 'number') r.push(a, a);
      else r.push(...a);
    }
    return neg ? negate(r) : normalize(r);
  }

  function quantifier(atom: Node): Node {
    let node = atom;
    while (true) {
      const c = peek();
      let min: number;
      let max: number;
      if (c === 0x2a) [min, max] = [0, Infinity];
      else if (c === 0x2b) [min, max] = [1, Infinity];
      else if (c === 0x3f) [min, max] = [0, 1];
      else if (c === 0x7b) {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(String.fromCodePoint(...cps.slice(i, i + 24)));
        if (!m) return node; // a literal '{' (Annex B); the caller reads it
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
        if (min > max) err('quantifier range out of order');
        if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT)) err(`repetition counts above ${MAX_REPEAT} are not supported`);
        i += m[0].length - 1;
      } else return node;
      i++;
      if (peek() === 0x3f) i++; // lazy: same language
      if (node.t === 'bol' || node.t === 'eol' || node.t === 'look') err('a quantifier cannot follow an assertion');
      node = { t: 'rep', node, min, max };
    }
  }

  function alternation(): Node {
    const alts: Node[] = [sequence()];
    while (peek() === 0x7c) {
      i++;
      alts.push(sequence());
    }
    return alts.length === 1 ? alts[0]! : { t: 'alt', alts };
  }

  function sequence(): Node {
    const items: Node[] = [];
    while (true) {
      const c = peek();
      if (c === undefined || c === 0x7c || c === 0x29) break;
      i++;
      let atom: Node;
      if (c === 0x28) {
        if (peek() === 0x3f) {
          const n1 = cps[i + 1];
          const n2 = cps[i + 2];
          if (n1 === 0x3a) i += 2; // (?:
          else if (n1 === 0x3d || n1 === 0x21) {
            i += 2;
            const inner = alternation();
            if (peek() !== 0x29) err('unbalanced parenthesis');
            i++;
            items.push({ t: 'look', neg: n1 === 0x21, node: inner });
            if (peek() !== undefined && /[*+?{]/.test(String.fromCodePoint(peek()!)) && !(peek() === 0x7b && !/^\{\d/.test(String.fromCodePoint(...cps.slice(i, i + 3))))) err('a quantifier cannot follow a lookahead');
            continue;
          } else if (n1 === 0x3c && (n2 === 0x3d || n2 === 0x21)) err('lookbehind is not supported');
          else if (n1 === 0x3c) {
            const close = cps.indexOf(0x3e, i);
            if (close < 0) err('bad group name');
            i = close + 1;
          } else err('unsupported group syntax');
        }
        const inner = alternation();
        if (peek() !== 0x29) err('unbalanced parenthesis');
        i++;
        atom = inner;
      } else if (c === 0x5b) atom = { t: 'chars', r: charClass() };
      else if (c === 0x2e) atom = { t: 'chars', r: DOT };
      else if (c === 0x5e) {
        items.push({ t: 'bol' });
        continue;
      } else if (c === 0x24) {
        items.push({ t: 'eol' });
        continue;
      } else if (c === 0x5c) {
        const e = escape(false);
        atom = { t: 'chars', r: typeof e === 'number' ? [e, e] : e };
      } else if (c === 0x2a || c === 0x2b || c === 0x3f) return err('nothing to repeat');
      else atom = { t: 'chars', r: [c, c] };
      items.push(quantifier(atom));
    }
    return items.length === 1 ? items[0]! : { t: 'seq', items };
  }

  const node = alternation();
  if (i < cps.length) err('unbalanced parenthesis');
  return node;
}

// --------------------------------------------------------------------------- lookahead lowering

function hasLook(n: Node): boolean {
  switch (n.t) {
    case 'look': return true;
    case 'seq': return n.items.some(hasLook);
    case 'alt': return n.alts.some(hasLook);
    case 'rep': return hasLook(n.node);
    default: return false;
  }
}

const ANY_STAR: Node = { t: 'rep', node: { t: 'chars', r: ALL }, min: 0, max: Infinity };

/**
 * `items` is a concatenation that runs to the end of the string. Lookaheads become automata:
 * `X (?=B) R` ≡ X · (L(R) ∩ L(B·Σ*)), `(?!B)` the difference. Groups and optional parts that hold a
 * lookahead are distributed over their alternatives first, so the lookahead's continuation is
 * explicit.
 */
interface Budget {
  n: number;
  /** Length bounds taken out of `^(?=.{m,n}$)` lookaheads. */
  len: [number, number];
}

const nullable = (n: Node): boolean => {
  switch (n.t) {
    case 'chars': return false;
    case 'seq': return n.items.every(nullable);
    case 'alt': return n.alts.some(nullable);
    case 'rep': return n.min === 0 || nullable(n.node);
    case 'dfa': return n.dfa.size > 0 && n.dfa.accept[n.dfa.start] === 1;
    default: return true;
  }
};

/** [m, n] for a positive lookahead `(?=.{m,n}X$)` at the start of the string (X may be empty). */
function lengthLook(look: Node & { t: 'look' }, before: Node[]): [number, number] | null {
  if (look.neg || before.length !== 2 || before[0] !== ANY_STAR || before[1]!.t !== 'bol') return null;
  const items = look.node.t === 'seq' ? look.node.items : [look.node];
  const first = items[0];
  if (items.length < 2 || items[items.length - 1]!.t !== 'eol' || !first || first.t !== 'rep' || first.node.t !== 'chars') return null;
  if (first.node.r.join() !== DOT.join()) return null;
  if (!items.slice(1, -1).every(nullable)) return null;
  return [first.min, first.max];
}

function lower(items: Node[], budget: Budget): Node {
  const flat: Node[] = [];
  for (const it of items) {
    if (it.t === 'seq') flat.push(...it.items);
    else flat.push(it);
  }
  for (let k = 0; k < flat.length; k++) {
    const it = flat[k]!;
    if (!hasLook(it)) continue;
    if (--budget.n < 0) throw new RegexError('pattern has too many lookahead combinations');
    const before = flat.slice(0, k);
    const after = flat.slice(k + 1);
    if (it.t === 'look') {
      const len = lengthLook(it, before);
      if (len) {
        // `^(?=.{m,n}…$)`: a length bound (hostname). Kept out of the automaton (the product with a
        // counter would have tens of thousands of states): the string alt checks the length, the
        // automaton only that no line terminator occurs. Narrower when the tail could add more.
        budget.len = [Math.max(budget.len[0], len[0]), Math.min(budget.len[1], len[1])];
        const rest = buildDfa(lower(after, budget));
        return { t: 'seq', items: [...before, { t: 'dfa', dfa: product(rest, buildDfa({ t: 'rep', node: { t: 'chars', r: DOT }, min: 0, max: Infinity }), 'and') }] };
      }
      const rest = buildDfa(lower(after, budget));
      const look = buildDfa(lower([it.node, ANY_STAR], budget));
      return { t: 'seq', items: [...before, { t: 'dfa', dfa: it.neg ? product(rest, look, 'diff') : product(rest, look, 'and') }] };
    }
    let alts: Node[];
    if (it.t === 'alt') alts = it.alts;
    else if (it.t === 'rep' && it.max <= 1) alts = it.min === 0 ? [EMPTY, it.node] : [it.node];
    else if (it.t === 'rep') throw new RegexError('a lookahead inside a repetition is not supported');
    else throw new RegexError('unexpected pattern structure');
    return { t: 'alt', alts: alts.map((a) => lower([...before, a, ...after], budget)) };
  }
  return { t: 'seq', items: flat };
}

// ----------------------------------------------------------------------------- NFA and DFA

const MAX_NFA = 60_000;
const MAX_DFA = 60_000;

class Nfa {
  eps: number[][] = [];
  /** ^ and $ edges: usable only at the start / the end of the input. */
  bol: number[][] = [];
  eol: number[][] = [];
  chars: { r: Ranges; to: number }[][] = [];
  add(): number {
    if (this.eps.length >= MAX_NFA) throw new RegexError('pattern is too large for an automaton');
    this.eps.push([]);
    this.bol.push([]);
    this.eol.push([]);
    this.chars.push([]);
    return this.eps.length - 1;
  }
}

/** Builds `n` between fresh states; returns [start, end]. */
function frag(nfa: Nfa, n: Node): [number, number] {
  const s = nfa.add();
  switch (n.t) {
    case 'chars': {
      const e = nfa.add();
      if (n.r.length) nfa.chars[s]!.push({ r: n.r, to: e });
      return [s, e];
    }
    case 'bol':
    case 'eol': {
      const e = nfa.add();
      (n.t === 'bol' ? nfa.bol : nfa.eol)[s]!.push(e);
      return [s, e];
    }
    case 'seq': {
      let cur = s;
      for (const it of n.items) {
        const [a, b] = frag(nfa, it);
        nfa.eps[cur]!.push(a);
        cur = b;
      }
      return [s, cur];
    }
    case 'alt': {
      const e = nfa.add();
      for (const a of n.alts) {
        const [x, y] = frag(nfa, a);
        nfa.eps[s]!.push(x);
        nfa.eps[y]!.push(e);
      }
      return [s, e];
    }
    case 'rep': {
      let cur = s;
      for (let k = 0; k < n.min; k++) {
        const [a, b] = frag(nfa, n.node);
        nfa.eps[cur]!.push(a);
        cur = b;
      }
      if (n.max === Infinity) {
        const [a, b] = frag(nfa, n.node);
        const e = nfa.add();
        nfa.eps[cur]!.push(a, e);
        nfa.eps[b]!.push(a, e);
        return [s, e];
      }
      const e = nfa.add();
      nfa.eps[cur]!.push(e);
      for (let k = n.min; k < n.max; k++) {
        const [a, b] = frag(nfa, n.node);
        nfa.eps[cur]!.push(a);
        nfa.eps[b]!.push(e);
        cur = b;
      }
      return [s, e];
    }
    case 'look':
      throw new RegexError('internal: lookahead not lowered');
    case 'dfa': {
      const d = n.dfa;
      const base = nfa.eps.length;
      for (let q = 0; q < d.size; q++) nfa.add();
      const e = nfa.add();
      for (let q = 0; q < d.size; q++) {
        const { lo, hi, to } = d.trans[q]!;
        for (let k = 0; k < lo.length; k++) nfa.chars[base + q]!.push({ r: [lo[k]!, hi[k]!], to: base + to[k]! });
        if (d.accept[q]) nfa.eps[base + q]!.push(e);
      }
      if (d.size > 0) nfa.eps[s]!.push(base + d.start);
      return [s, e];
    }
  }
}

export interface Dfa {
  size: number;
  start: number;
  /** Per state: sorted disjoint code point ranges and their targets. */
  trans: { lo: Int32Array; hi: Int32Array; to: Int32Array }[];
  accept: Uint8Array;
  /** Shortest number of characters to an accepting state (after trimming: finite everywhere). */
  minRemain: Int32Array;
  /** Longest (Infinity when a loop is reachable on the way). */
  maxRemain: Float64Array;
  /** Accepting and every character keeps it here: the rest of the string is free. */
  universal: Uint8Array;
}

function closure(nfa: Nfa, set: Iterable<number>, atStart: boolean): number[] {
  const seen = new Set<number>();
  const stack = [...set];
  while (stack.length) {
    const q = stack.pop()!;
    if (seen.has(q)) continue;
    seen.add(q);
    for (const x of nfa.eps[q]!) stack.push(x);
    if (atStart) for (const x of nfa.bol[q]!) stack.push(x);
  }
  return [...seen].sort((a, b) => a - b);
}

/** Whether `final` is reachable from `set` through ε, $ (and ^ at the start) edges. */
function acceptsAtEnd(nfa: Nfa, set: number[], final: number, atStart: boolean): boolean {
  const seen = new Set<number>();
  const stack = [...set];
  while (stack.length) {
    const q = stack.pop()!;
    if (q === final) return true;
    if (seen.has(q)) continue;
    seen.add(q);
    for (const x of nfa.eps[q]!) stack.push(x);
    for (const x of nfa.eol[q]!) stack.push(x);
    if (atStart) for (const x of nfa.bol[q]!) stack.push(x);
  }
  return false;
}

interface RawDfa {
  trans: { lo: number[]; hi: number[]; to: number[] }[];
  accept: boolean[];
}

/** Splits overlapping (range → target) pairs into disjoint intervals with target sets. */
function partition(edges: { lo: number; hi: number; to: number }[]): { lo: number; hi: number; tos: number[] }[] {
  const pts = new Set<number>();
  for (const e of edges) {
    pts.add(e.lo);
    pts.add(e.hi + 1);
  }
  const bounds = [...pts].sort((a, b) => a - b);
  const out: { lo: number; hi: number; tos: number[] }[] = [];
  for (let k = 0; k + 1 < bounds.length; k++) {
    const lo = bounds[k]!;
    const hi = bounds[k + 1]! - 1;
    const tos: number[] = [];
    for (const e of edges) if (e.lo <= lo && e.hi >= hi) tos.push(e.to);
    if (tos.length) out.push({ lo, hi, tos });
  }
  return out;
}

function subset(nfa: Nfa, start: number, final: number): RawDfa {
  const ids = new Map<string, number>();
  const sets: number[][] = [];
  const raw: RawDfa = { trans: [], accept: [] };
  const init = closure(nfa, [start], true);
  const atStartId = 0;
  sets.push(init);
  ids.set('^' + init.join(','), 0);
  for (let d = 0; d < sets.length; d++) {
    const set = sets[d]!;
    const atStart = d === atStartId;
    raw.accept.push(acceptsAtEnd(nfa, set, final, atStart));
    const edges: { lo: number; hi: number; to: number }[] = [];
    for (const q of set) for (const c of nfa.chars[q]!) for (let k = 0; k < c.r.length; k += 2) edges.push({ lo: c.r[k]!, hi: c.r[k + 1]!, to: c.to });
    const t = { lo: [] as number[], hi: [] as number[], to: [] as number[] };
    for (const p of partition(edges)) {
      const target = closure(nfa, p.tos, false);
      const key = target.join(',');
      let id = ids.get(key);
      if (id === undefined) {
        id = sets.length;
        if (id >= MAX_DFA) throw new RegexError('pattern is too large for an automaton');
        ids.set(key, id);
        sets.push(target);
      }
      const n = t.to.length;
      if (n && t.to[n - 1] === id && t.hi[n - 1]! + 1 === p.lo) t.hi[n - 1] = p.hi;
      else {
        t.lo.push(p.lo);
        t.hi.push(p.hi);
        t.to.push(id);
      }
    }
    raw.trans.push(t);
  }
  return raw;
}

/** Intersection ('and') or difference ('diff', a ∖ b) of two DFAs. */
function product(a: Dfa, b: Dfa, op: 'and' | 'diff'): Dfa {
  // b's dead state is -1 (no transition: b can never accept again).
  const ids = new Map<number, number>();
  const pairs: [number, number][] = [];
  const raw: RawDfa = { trans: [], accept: [] };
  const key = (x: number, y: number) => x * (b.size + 1) + (y + 1);
  const intern = (x: number, y: number): number => {
    const k = key(x, y);
    let id = ids.get(k);
    if (id === undefined) {
      id = pairs.length;
      if (id >= MAX_DFA) throw new RegexError('pattern is too large for an automaton');
      ids.set(k, id);
      pairs.push([x, y]);
    }
    return id;
  };
  if (a.size === 0) return finish({ trans: [], accept: [] }, 0);
  intern(a.start, b.size ? b.start : -1);
  for (let d = 0; d < pairs.length; d++) {
    const [x, y] = pairs[d]!;
    const accB = y >= 0 && b.accept[y] === 1;
    raw.accept.push(a.accept[x] === 1 && (op === 'and' ? accB : !accB));
    const ta = a.trans[x]!;
    const t = { lo: [] as number[], hi: [] as number[], to: [] as number[] };
    const emit = (lo: number, hi: number, id: number) => {
      const n = t.to.length;
      if (n && t.to[n - 1] === id && t.hi[n - 1]! + 1 === lo) t.hi[n - 1] = hi;
      else {
        t.lo.push(lo);
        t.hi.push(hi);
        t.to.push(id);
      }
    };
    const tb = y >= 0 ? b.trans[y]! : null;
    let j = 0;
    for (let k = 0; k < ta.lo.length; k++) {
      let lo = ta.lo[k]!;
      const hi = ta.hi[k]!;
      while (lo <= hi) {
        if (!tb) {
          if (op === 'diff') emit(lo, hi, intern(ta.to[k]!, -1));
          break;
        }
        while (j < tb.lo.length && tb.hi[j]! < lo) j++;
        if (j >= tb.lo.length || tb.lo[j]! > hi) {
          if (op === 'diff') emit(lo, hi, intern(ta.to[k]!, -1));
          break;
        }
        if (tb.lo[j]! > lo) {
          if (op === 'diff') emit(lo, tb.lo[j]! - 1, intern(ta.to[k]!, -1));
          lo = tb.lo[j]!;
        }
        const end = Math.min(hi, tb.hi[j]!);
        emit(lo, end, intern(ta.to[k]!, tb.to[j]!));
        lo = end + 1;
      }
    }
    raw.trans.push(t);
  }
  return finish(raw, 0);
}

/** Drops states that cannot reach acceptance, renumbers, computes the distances. */
function finish(raw: RawDfa, start: number): Dfa {
  const n = raw.accept.length;
  const rev: number[][] = Array.from({ length: n }, () => []);
  raw.trans.forEach((t, q) => t.to.forEach((x) => rev[x]!.push(q)));
  const live = new Uint8Array(n);
  const stack: number[] = [];
  for (let q = 0; q < n; q++) if (raw.accept[q]) {
    live[q] = 1;
    stack.push(q);
  }
  while (stack.length) for (const p of rev[stack.pop()!]!) if (!live[p]) {
    live[p] = 1;
    stack.push(p);
  }
  const empty: Dfa = { size: 0, start: 0, trans: [], accept: new Uint8Array(0), minRemain: new Int32Array(0), maxRemain: new Float64Array(0), universal: new Uint8Array(0) };
  if (n === 0 || !live[start]) return empty;
  // Renumber reachable live states from the start.
  const id = new Int32Array(n).fill(-1);
  const order: number[] = [start];
  id[start] = 0;
  for (let k = 0; k < order.length; k++) {
    for (const x of raw.trans[order[k]!]!.to) if (live[x] && id[x] < 0) {
      id[x] = order.length;
      order.push(x);
    }
  }
  const size = order.length;
  const trans = order.map((q) => {
    const t = raw.trans[q]!;
    const lo: number[] = [];
    const hi: number[] = [];
    const to: number[] = [];
    for (let k = 0; k < t.to.length; k++) {
      if (!live[t.to[k]!]) continue;
      const target = id[t.to[k]!]!;
      const m = to.length;
      if (m && to[m - 1] === target && hi[m - 1]! + 1 === t.lo[k]) hi[m - 1] = t.hi[k]!;
      else {
        lo.push(t.lo[k]!);
        hi.push(t.hi[k]!);
        to.push(target);
      }
    }
    return { lo: Int32Array.from(lo), hi: Int32Array.from(hi), to: Int32Array.from(to) };
  });
  const accept = Uint8Array.from(order.map((q) => (raw.accept[q] ? 1 : 0)));
  // Shortest distance to acceptance: BFS backwards.
  const rv: number[][] = Array.from({ length: size }, () => []);
  trans.forEach((t, q) => t.to.forEach((x) => rv[x]!.push(q)));
  const minRemain = new Int32Array(size).fill(-1);
  const queue: number[] = [];
  for (let q = 0; q < size; q++) if (accept[q]) {
    minRemain[q] = 0;
    queue.push(q);
  }
  for (let k = 0; k < queue.length; k++) {
    const q = queue[k]!;
    for (const p of rv[q]!) if (minRemain[p]! < 0) {
      minRemain[p] = minRemain[q]! + 1;
      queue.push(p);
    }
  }
  // Longest distance: Infinity on (or before) a cycle, else the longest path in the DAG.
  const maxRemain = new Float64Array(size).fill(-1);
  const onStack = new Uint8Array(size);
  const visit = (root: number) => {
    // Iterative DFS (patterns can make deep chains).
    const st: [number, number][] = [[root, 0]];
    onStack[root] = 1;
    while (st.length) {
      const top = st[st.length - 1]!;
      const [q, k] = top;
      const t = trans[q]!;
      if (k < t.to.length) {
        top[1]++;
        const x = t.to[k]!;
        if (onStack[x]) maxRemain[q] = Infinity;
        else if (maxRemain[x]! < 0) {
          onStack[x] = 1;
          st.push([x, 0]);
        }
        continue;
      }
      let best = accept[q] ? 0 : -Infinity;
      if (maxRemain[q] === Infinity) best = Infinity;
      for (let j = 0; j < t.to.length; j++) best = Math.max(best, maxRemain[t.to[j]!]! + 1);
      maxRemain[q] = best;
      onStack[q] = 0;
      st.pop();
    }
  };
  for (let q = 0; q < size; q++) if (maxRemain[q]! < 0) visit(q);
  // A state that reaches a cycle has unbounded length too (the DFS may have finished the cycle's
  // members before marking them): propagate Infinity backwards.
  const inf: number[] = [];
  for (let q = 0; q < size; q++) if (maxRemain[q] === Infinity) inf.push(q);
  while (inf.length) for (const p of rv[inf.pop()!]!) if (maxRemain[p] !== Infinity) {
    maxRemain[p] = Infinity;
    inf.push(p);
  }
  const universal = new Uint8Array(size);
  for (let q = 0; q < size; q++) {
    const t = trans[q]!;
    universal[q] = accept[q] && t.lo.length === 1 && t.lo[0] === 0 && t.hi[0]! >= 0x10ffff && t.to[0] === q ? 1 : 0;
    // Surrogates never reach the automaton, so [0, D7FF] ∪ [E000, 10FFFF] is "everything" too.
    if (!universal[q] && accept[q] && t.lo.length === 2 && t.lo[0] === 0 && t.hi[0]! >= 0xd7ff && t.lo[1]! <= 0xe000 && t.hi[1]! >= 0x10ffff && t.to[0] === q && t.to[1] === q) universal[q] = 1;
  }
  return { size, start: 0, trans, accept, minRemain, maxRemain, universal };
}

function buildDfa(node: Node): Dfa {
  const nfa = new Nfa();
  const [s, e] = frag(nfa, node);
  return finish(subset(nfa, s, e), 0);
}

const cache = new Map<string, CompiledPattern>();
const CACHE_MAX = 256;

export interface CompiledPattern {
  dfa: Dfa;
  /** Length bounds (characters) the strings must also meet (from `^(?=.{m,n}$)`). */
  minLength: number;
  maxLength: number;
}

/** The DFA of `pattern` with RegExp.prototype.test semantics (a match anywhere). */
export function compilePattern(pattern: string): CompiledPattern {
  const hit = cache.get(pattern);
  if (hit) return hit;
  const ast = parse(pattern);
  const budget: Budget = { n: 256, len: [0, Infinity] };
  const node = lower([ANY_STAR, ast, ANY_STAR], budget);
  const res = { dfa: buildDfa(node), minLength: budget.len[0], maxLength: budget.len[1] };
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(pattern, res);
  return res;
}

/** Strings accepted by both. */
export function intersectDfa(a: Dfa, b: Dfa): Dfa {
  return product(a, b, 'and');
}

/** Strings accepted by `a` and not by `b`. */
export function subtractDfa(a: Dfa, b: Dfa): Dfa {
  return product(a, b, 'diff');
}

/** Strings accepted by any of them. */
export function unionDfa(ds: readonly Dfa[]): Dfa {
  return buildDfa({ t: 'alt', alts: ds.map((dfa) => ({ t: 'dfa', dfa }) as Node) });
}

/** A DFA that accepts exactly the given strings. */
export function literalsDfa(words: readonly string[]): Dfa {
  const alts: Node[] = words.map((w) => ({ t: 'seq', items: Array.from(w, (c) => ({ t: 'chars', r: [c.codePointAt(0)!, c.codePointAt(0)!] }) as Node) }));
  return buildDfa({ t: 'alt', alts: alts.length ? alts : [{ t: 'chars', r: [] }] });
}

/** Next state on code point `cp`, or -1. */
export function dfaStep(d: Dfa, q: number, cp: number): number {
  const { lo, hi, to } = d.trans[q]!;
  let a = 0;
  let b = lo.length - 1;
  while (a <= b) {
    const m = (a + b) >> 1;
    if (cp < lo[m]!) b = m - 1;
    else if (cp > hi[m]!) a = m + 1;
    else return to[m]!;
  }
  return -1;
}

export function dfaMatches(d: Dfa, s: string): boolean {
  if (d.size === 0) return false;
  let q = d.start;
  for (const c of s) {
    q = dfaStep(d, q, c.codePointAt(0)!);
    if (q < 0) return false;
  }
  return d.accept[q] === 1;
}

/** Every accepted string when there are at most `limit` of them (no loops); null otherwise. */
export function finiteLanguage(d: Dfa, limit: number): string[] | null {
  if (d.size === 0) return [];
  if (d.maxRemain[d.start] === Infinity) return null;
  const out: string[] = [];
  const walk = (q: number, prefix: string): boolean => {
    if (d.accept[q]) {
      out.push(prefix);
      if (out.length > limit) return false;
    }
    const { lo, hi, to } = d.trans[q]!;
    for (let k = 0; k < lo.length; k++) {
      if (hi[k]! - lo[k]! + 1 > limit) return false;
      for (let c = lo[k]!; c <= hi[k]!; c++) {
        if (c >= 0xd800 && c <= 0xdfff) continue;
        if (!walk(to[k]!, prefix + String.fromCodePoint(c))) return false;
      }
    }
    return true;
  };
  return walk(d.start, '') ? out : null;
}
