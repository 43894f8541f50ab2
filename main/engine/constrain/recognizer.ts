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
import type { ArrayAlt, LiteralAlt, NumberAlt, ObjectAlt, StringAlt, ValueNode } from './schema.ts';

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
const MAX_INT_DIGITS = 16;
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
}
interface StrScan {
  esc: number;
  need: number;
  lo: number;
  hi: number;
}
interface KeyF {
  k: K.Key;
  /** Declared properties whose key text still matches. */
  cands: readonly number[];
  pos: number;
  /** String scanner of a free (additionalProperties) key, null when no free key is possible. */
  free: StrScan | null;
  raw: string;
}
interface ArrF {
  k: K.Arr;
  alt: ArrayAlt;
  ph: number;
  count: number;
  ws: number;
}
interface StrF {
  k: K.Str;
  alt: StringAlt;
  /** Characters so far (an escape counts once). */
  len: number;
  s: StrScan;
}
interface NumF {
  k: K.Num;
  integer: boolean;
  ph: number;
  n: number;
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

/** The stack after a value on top of `rest` completed (null = document complete). */
function finishValue(rest: Stack | null): Stack | null {
  if (rest === null) return null;
  const f = rest.f;
  if (f.k === K.Obj) return push({ ...f, ph: O_AFTER, ws: 0, vnode: null }, rest.next);
  if (f.k === K.Arr) return push({ ...f, ph: A_AFTER, count: f.count + 1, ws: 0 }, rest.next);
  return rest; // a Raw suffix follows the value
}

const STR0: StrScan = { esc: 0, need: 0, lo: 0x80, hi: 0xbf };
let scanOut: StrScan = STR0;

/**
 * One byte of a JSON string body. Returns -1 invalid, 0 consumed (no new character), 1 a new
 * character started, 2 the closing quote; the next scanner state is left in `scanOut`.
 */
function strByte(s: StrScan, b: number): number {
  if (s.need > 0) {
    if (b < s.lo || b > s.hi) return -1;
    scanOut = s.need === 1 ? STR0 : { esc: 0, need: s.need - 1, lo: 0x80, hi: 0xbf };
    return 0;
  }
  if (s.esc === 1) {
    // After a backslash: one of the JSON escapes.
    if (b === 0x22 || b === 0x5c || b === 0x2f || b === 0x62 || b === 0x66 || b === 0x6e || b === 0x72 || b === 0x74) {
      scanOut = STR0;
      return 0;
    }
    if (b === 0x75) {
      scanOut = { esc: 5, need: 0, lo: 0x80, hi: 0xbf };
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
    scanOut = next <= 1 ? STR0 : { esc: next, need: 0, lo: 0x80, hi: 0xbf };
    return 0;
  }
  if (b === 0x22) {
    scanOut = STR0;
    return 2;
  }
  if (b === 0x5c) {
    scanOut = { esc: 1, need: 0, lo: 0x80, hi: 0xbf };
    return 1;
  }
  if (b < 0x20) return -1; // control characters must be escaped
  if (b < 0x80) {
    scanOut = STR0;
    return 1;
  }
  // UTF-8 lead bytes, with the ranges that exclude overlong forms and surrogates.
  if (b >= 0xc2 && b <= 0xdf) scanOut = { esc: 0, need: 1, lo: 0x80, hi: 0xbf };
  else if (b === 0xe0) scanOut = { esc: 0, need: 2, lo: 0xa0, hi: 0xbf };
  else if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) scanOut = { esc: 0, need: 2, lo: 0x80, hi: 0xbf };
  else if (b === 0xed) scanOut = { esc: 0, need: 2, lo: 0x80, hi: 0x9f };
  else if (b === 0xf0) scanOut = { esc: 0, need: 3, lo: 0x90, hi: 0xbf };
  else if (b >= 0xf1 && b <= 0xf3) scanOut = { esc: 0, need: 3, lo: 0x80, hi: 0xbf };
  else if (b === 0xf4) scanOut = { esc: 0, need: 3, lo: 0x80, hi: 0x8f };
  else return -1;
  return 1;
}

/** Declared properties that may be written next: in order, not skipping a required one. */
function candidates(alt: ObjectAlt, last: number): number[] {
  const out: number[] = [];
  for (let j = last + 1; j < alt.props.length; j++) {
    out.push(j);
    if (alt.props[j]!.required) break;
  }
  return out;
}

function requiredRemaining(alt: ObjectAlt, last: number): boolean {
  for (let j = last + 1; j < alt.props.length; j++) if (alt.props[j]!.required) return true;
  return false;
}

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
  if (hi - lo === 1 && texts[lo]!.length === pos) out.push(finishValue(rest));
  else out.push(push({ k: K.Lit, texts, lo, hi, pos }, rest));
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
  if (b === 0x2d) out.push(push({ k: K.Num, integer: alt.integer, ph: 0, n: 0 }, rest));
  else if (b === 0x30) out.push(push({ k: K.Num, integer: alt.integer, ph: 2, n: 1 }, rest));
  else if (b > 0x30 && b <= 0x39) out.push(push({ k: K.Num, integer: alt.integer, ph: 1, n: 1 }, rest));
}

/** A value starts with byte `b` (not whitespace) where `rest` continues after it. */
function startValue(node: ValueNode, b: number, rest: Stack | null, out: (Stack | null)[]): void {
  const depth = rest ? rest.depth : 0;
  for (const alt of node.alts) {
    switch (alt.kind) {
      case 'object':
        if (b === 0x7b && !(alt.generic && depth >= MAX_GENERIC_DEPTH)) {
          out.push(push({ k: K.Obj, alt, ph: O_OPEN, last: -1, ws: 0, extras: [], vnode: null }, rest));
        }
        break;
      case 'array':
        if (b === 0x5b && !(alt.generic && depth >= MAX_GENERIC_DEPTH)) {
          out.push(push({ k: K.Arr, alt, ph: A_OPEN, count: 0, ws: 0 }, rest));
        }
        break;
      case 'string':
        if (b === 0x22) out.push(push({ k: K.Str, alt, len: 0, s: STR0 }, rest));
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
      if (d) nf = f.n < MAX_INT_DIGITS ? { ...f, n: f.n + 1 } : null;
      else if (!f.integer && b === 0x2e) nf = { ...f, ph: 3, n: 0 };
      else if (!f.integer && (b === 0x65 || b === 0x45)) nf = { ...f, ph: 5, n: 0 };
      break;
    case 2: // a leading 0
      if (!f.integer && b === 0x2e) nf = { ...f, ph: 3, n: 0 };
      else if (!f.integer && (b === 0x65 || b === 0x45)) nf = { ...f, ph: 5, n: 0 };
      break;
    case 3: // after '.'
      if (d) nf = { ...f, ph: 4, n: 1 };
      break;
    case 4: // fraction digits
      if (d) nf = f.n < MAX_FRAC_DIGITS ? { ...f, n: f.n + 1 } : null;
      else if (b === 0x65 || b === 0x45) nf = { ...f, ph: 5, n: 0 };
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
    out.push(push(nf, rest));
    return;
  }
  // Not part of the number: if the number is complete, the byte belongs to what follows it.
  if (!d && numComplete(f.ph)) {
    const after = finishValue(rest);
    if (after !== null) step(after, b, out);
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
        const cands = candidates(f.alt, f.last);
        const free = f.alt.additional !== null ? STR0 : null;
        if (cands.length > 0 || free) out.push(push({ k: K.Key, cands, pos: 0, free, raw: '' }, st));
      } else if (b === 0x7d && f.ph === O_OPEN && !requiredRemaining(f.alt, f.last)) {
        out.push(finishValue(rest));
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
        if (f.last < f.alt.props.length - 1 || f.alt.additional !== null) out.push(push({ ...f, ph: O_COMMA, ws: 0 }, rest));
      } else if (b === 0x7d && !requiredRemaining(f.alt, f.last)) {
        out.push(finishValue(rest));
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
      out.push(push({ ...obj, ph: O_COLON, last: j, ws: 0, vnode: props[j]!.value }, objStack.next));
    } else (cont ??= []).push(j);
  }
  let free: StrScan | null = null;
  let raw = f.raw;
  if (f.free) {
    const r = strByte(f.free, b);
    if (r === 2) {
      // A free key is complete: it must be new and not a declared property's name.
      if (!declaredKeys(obj.alt).has(raw) && !obj.extras.includes(raw)) {
        out.push(push({ ...obj, ph: O_COLON, ws: 0, vnode: obj.alt.additional, extras: [...obj.extras, raw] }, objStack.next));
      }
    } else if (r >= 0) {
      free = scanOut;
      raw += String.fromCharCode(b);
    }
  }
  if (cont || free) out.push(push({ k: K.Key, cands: cont ?? [], pos: f.pos + 1, free, raw }, objStack));
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
      if (f.alt.minItems === 0) out.push(finishValue(rest));
    } else if (f.alt.maxItems > 0) {
      startValue(f.alt.items, b, push({ ...f, ph: A_ITEM, ws: 0 }, rest), out);
    }
  } else if (f.ph === A_AFTER) {
    if (b === 0x2c) {
      if (f.count < f.alt.maxItems) out.push(push({ k: K.Value, node: f.alt.items, ws: 0 }, push({ ...f, ph: A_ITEM, ws: 0 }, rest)));
    } else if (b === 0x5d && f.count >= f.alt.minItems) {
      out.push(finishValue(rest));
    }
  }
}

/** Advances one stack by one byte, appending the resulting alternatives to `out`. */
function step(st: Stack, b: number, out: (Stack | null)[]): void {
  const f = st.f;
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
      const r = strByte(f.s, b);
      if (r === 2) {
        if (f.len >= f.alt.minLength) out.push(finishValue(st.next));
      } else if (r === 1) {
        if (f.len < f.alt.maxLength) out.push(push({ k: K.Str, alt: f.alt, len: f.len + 1, s: scanOut }, st.next));
      } else if (r === 0) {
        out.push(push({ k: K.Str, alt: f.alt, len: f.len, s: scanOut }, st.next));
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
        if (after !== null) step(after, b, out);
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
    if (f.k === K.Str) c = f.s === STR0 ? f.alt.maxLength - f.len : -1;
    else if (f.k === K.Key) c = f.free === STR0 ? Infinity : -1;
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
  if (f.k === K.Num) return numComplete(f.ph) && finishValue(s.next) === null;
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
