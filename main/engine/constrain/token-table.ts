// The vocabulary as bytes, for token masking: every id's UTF-8 bytes exactly as the detokenizer
// will emit them, plus the ids sorted bytewise with the longest common prefix (LCP) of each with
// its predecessor. Walking the sorted list is a depth-first walk of the token trie without
// building one: the recognizer state of a shared prefix is computed once, and a dead prefix skips
// every token that starts with it (llama.cpp walks its grammar over a trie the same way).
//
// Byte-level BPE (GPT-2/Qwen/Llama 3): token strings use the 256-character byte alphabet, so a
// token may carry half a UTF-8 character; we map it back to raw bytes. SentencePiece vocabularies
// (Llama 2/Mistral): `▁` is a space and `<0xNN>` a raw byte.
import { patternAllowedIds, patternMask, shareList, sharedListId, type PatternMaskCache } from './pattern-mask.ts';
import { advanceByte, advanceBytes, openStringCapacity, patternStringState, scanStringBody, type RecognizerState } from './recognizer.ts';

/** What the table needs from the tokenizer (engine/text's TextTokenizer satisfies it). */
export interface VocabSource {
  idToToken(id: number): string | undefined;
  readonly addedTokens: ReadonlyMap<string, { id: number; content: string; special: boolean }>;
}

export interface TokenTable {
  /** Per id: the bytes it adds to the text, or null when the id may never be emitted under a constraint. */
  readonly bytes: readonly (Uint8Array | null)[];
  /** Ids with bytes, sorted bytewise. */
  readonly order: Int32Array;
  /** lcp[k] = common prefix length of order[k] and order[k-1] (0 for k = 0). */
  readonly lcp: Uint16Array;
  readonly size: number;
  /** Ids below vocabSize that have no bytes (special tokens, embedding padding rows). */
  readonly noBytes: Int32Array;
  readonly buildMs: number;
  /**
   * Filled on first use: ids whose bytes stay inside a string body read from a character
   * boundary ('open'), and ids whose bytes end a string somewhere ('close').
   */
  stringBody?: StringBodyIds;
  /** Pattern/format strings: per automaton, its character classes and per state the tokens it takes (pattern-mask.ts). */
  patternMasks?: PatternMaskCache;
  /** Filled on first use: per dead-prefix length, where the walk resumes (skipsOf). */
  skips?: Int32Array[];
  /** Combined masks of several alternatives, by their parts (alternativesMask), least recently used first. */
  altMasks?: Map<string, TokenMask>;
  /** Ids held by altMasks. */
  altMaskIds?: number;
}

interface StringBodyIds {
  open: Int32Array;
  /** Characters each `open` id adds (an escape counts once). */
  openChars: Uint16Array;
  close: Int32Array;
  /** Ids whose bytes are not valid string content (raw control bytes, stray UTF-8 continuations …). */
  invalid: Int32Array;
}

/** GPT-2's bytes_to_unicode, inverted: byte-alphabet character → byte. */
function byteDecoder(): Map<number, number> {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const m = new Map<number, number>();
  bs.forEach((b, i) => m.set(cs[i]!, b));
  return m;
}

const enc = new TextEncoder();

/**
 * Builds the table for ids 0..vocabSize-1. `keepSpecial` are special tokens whose text the
 * detokenizer keeps (tool-call markers); other special tokens (EOS, role markers) get no bytes:
 * EOS is handled separately and the rest never appear inside constrained output.
 */
export function buildTokenTable(src: VocabSource, vocabSize: number, keepSpecial: ReadonlySet<string> = new Set()): TokenTable {
  const t0 = performance.now();
  const added = new Map<number, { content: string; special: boolean }>();
  for (const info of src.addedTokens.values()) added.set(info.id, info);
  const byteLevel = src.idToToken(0) !== undefined && hasByteAlphabet(src, vocabSize);
  const dec = byteDecoder();
  const bytes: (Uint8Array | null)[] = new Array(vocabSize).fill(null);
  const keys: string[] = [];
  const ids: number[] = [];
  for (let id = 0; id < vocabSize; id++) {
    let b: Uint8Array | null = null;
    const a = added.get(id);
    if (a) {
      if (!a.special || keepSpecial.has(a.content)) b = enc.encode(a.content);
    } else {
      const tok = src.idToToken(id);
      if (tok !== undefined) b = byteLevel ? decodeByteLevel(tok, dec) : decodeSentencePiece(tok);
    }
    if (!b || b.length === 0) continue;
    bytes[id] = b;
    ids.push(id);
    keys.push(String.fromCharCode(...b));
  }
  // Sort by the latin1 strings: UTF-16 code unit order equals byte order here.
  const idx = ids.map((_, i) => i);
  idx.sort((x, y) => (keys[x]! < keys[y]! ? -1 : keys[x]! > keys[y]! ? 1 : 0));
  const order = new Int32Array(idx.length);
  const lcp = new Uint16Array(idx.length);
  let prev = '';
  idx.forEach((i, k) => {
    order[k] = ids[i]!;
    const cur = keys[i]!;
    let l = 0;
    const n = Math.min(prev.length, cur.length, 65535);
    while (l < n && prev.charCodeAt(l) === cur.charCodeAt(l)) l++;
    lcp[k] = l;
    prev = cur;
  });
  const noBytes: number[] = [];
  for (let id = 0; id < vocabSize; id++) if (!bytes[id]) noBytes.push(id);
  return { bytes, order, lcp, size: order.length, noBytes: Int32Array.from(noBytes), buildMs: performance.now() - t0 };
}

function hasByteAlphabet(src: VocabSource, vocabSize: number): boolean {
  // Byte-level vocabularies spell a leading space as 'Ġ' (U+0120) and have no '▁'.
  let g = 0;
  let sp = 0;
  for (let id = 0; id < Math.min(vocabSize, 5000); id++) {
    const t = src.idToToken(id);
    if (!t) continue;
    if (t.startsWith('\u0120')) g++;
    if (t.startsWith('\u2581')) sp++;
  }
  return g >= sp;
}

function decodeByteLevel(tok: string, dec: Map<number, number>): Uint8Array | null {
  const out = new Uint8Array(tok.length);
  let n = 0;
  for (const ch of tok) {
    const b = dec.get(ch.codePointAt(0)!);
    if (b === undefined) return enc.encode(tok); // not in the byte alphabet: a literal token
    out[n++] = b;
  }
  return out.subarray(0, n);
}

function decodeSentencePiece(tok: string): Uint8Array | null {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(tok);
  if (m) return Uint8Array.of(parseInt(m[1]!, 16));
  return enc.encode(tok.replace(/\u2581/g, ' '));
}

/**
 * Ids whose bytes keep `state` alive, by the sorted walk described above. `scratch` is reused
 * between calls (states per prefix depth).
 */
export function allowedTokenIds(table: TokenTable, state: RecognizerState, out: number[] = []): number[] {
  const { order, lcp, bytes } = table;
  const ps = patternStringState(state);
  if (ps) return patternAllowedIds(table, state, ps, out);
  if (state.length > 1 && state.length <= 8) {
    // Several alternatives (anyOf branches, `contains` items read both ways), some inside a string:
    // a token is allowed when some alternative takes it, so each string alternative gets its fast
    // path and the others share one walk; the union, without duplicates.
    const fast = state.filter((st) => st !== null && (patternStringState([st]) !== null || openStringCapacity([st]) >= 0));
    if (fast.length > 0) {
      const rest = state.filter((st) => !fast.includes(st));
      const parts = fast.map((st) => allowedTokenIds(table, [st]));
      if (rest.some((st) => st !== null)) parts.push(allowedTokenIds(table, rest));
      const seen = new Uint8Array(bytes.length);
      for (const part of parts) for (const id of part) if (!seen[id]) {
        seen[id] = 1;
        out.push(id);
      }
      return out;
    }
  }
  const cap = openStringCapacity(state);
  if (cap >= 0) {
    // Inside a string nearly the whole vocabulary is allowed, and the walk would visit all of
    // it: take the precomputed ids that stay inside (as many characters as still fit) and check
    // only the ids that close the string.
    const sb = stringBodyIds(table);
    if (cap === Infinity) for (let i = 0; i < sb.open.length; i++) out.push(sb.open[i]!);
    else for (let i = 0; i < sb.open.length; i++) if (sb.openChars[i]! <= cap) out.push(sb.open[i]!);
    for (let i = 0; i < sb.close.length; i++) {
      const id = sb.close[i]!;
      if (advanceBytes(state, bytes[id]!)) out.push(id);
    }
    return out;
  }
  const states: (RecognizerState | null)[] = [state];
  const skip = skipsOf(table);
  let deadAt = Number.POSITIVE_INFINITY;
  for (let k = 0; k < order.length; k++) {
    const l = lcp[k]!;
    if (l > deadAt) continue; // starts with the dead prefix
    const id = order[k]!;
    const t = bytes[id]!;
    let s = states[l]!;
    let i = l;
    for (; i < t.length; i++) {
      const nx = advanceByte(s, t[i]!);
      if (!nx) break;
      s = nx;
      states[i + 1] = nx;
    }
    if (i < t.length) {
      deadAt = i;
      // A short dead prefix: jump past every token that starts with it at once.
      if (i < SKIP_DEPTHS) k = skip[i]![k]! - 1;
      continue;
    }
    deadAt = Number.POSITIVE_INFINITY;
    out.push(id);
  }
  return out;
}

/** Dead prefixes up to this many bytes are jumped over (most dead ends are at the first or second byte). */
const SKIP_DEPTHS = 3;

/**
 * skip[d][k]: the first index after k in the sorted order whose token shares at most d leading
 * bytes with its predecessor, i.e. the first token that does not start with order[k]'s first d+1
 * bytes. Without it the walk still visits each of the ~75,000 tokens behind a dead space or quote.
 */
function skipsOf(table: TokenTable): Int32Array[] {
  if (table.skips) return table.skips;
  const { lcp } = table;
  const n = lcp.length;
  const out: Int32Array[] = [];
  for (let d = 0; d < SKIP_DEPTHS; d++) {
    const a = new Int32Array(n);
    let next = n;
    for (let k = n - 1; k >= 0; k--) {
      a[k] = next;
      if (lcp[k]! <= d) next = k;
    }
    out.push(a);
  }
  table.skips = out;
  return out;
}

function stringBodyIds(table: TokenTable): StringBodyIds {
  if (table.stringBody) return table.stringBody;
  const open: number[] = [];
  const chars: number[] = [];
  const close: number[] = [];
  const invalid: number[] = [];
  for (let k = 0; k < table.order.length; k++) {
    const id = table.order[k]!;
    const r = scanStringBody(table.bytes[id]!);
    if (r === 'close') close.push(id);
    else if (r === 'invalid') invalid.push(id);
    else {
      open.push(id);
      chars.push(Math.min(r, 65535));
    }
  }
  table.stringBody = {
    open: Int32Array.from(open),
    openChars: Uint16Array.from(chars),
    close: Int32Array.from(close),
    invalid: Int32Array.from(invalid),
  };
  return table.stringBody;
}

/**
 * The allowed next tokens, as the shorter of the two lists. The list may be a cached one handed
 * out by reference (pattern strings): never modify it.
 */
export type TokenMask = { readonly allow: readonly number[] } | { readonly deny: readonly number[] };

/**
 * Like allowedTokenIds, but inside a string — where nearly the whole vocabulary is allowed — as
 * the ids that are NOT allowed (a few thousand instead of ~147,000 for Qwen3): building an MLX
 * index array of 147k ids alone costs ~25 ms, more than the mask itself. Elsewhere the allowed
 * list (EOS is not in either list; the caller adds it when the document may end).
 */
export function tokenMask(table: TokenTable, state: RecognizerState): TokenMask {
  const ps = patternStringState(state);
  if (ps) return patternMask(table, state, ps);
  const cap0 = openStringCapacity(state);
  if (cap0 < 0 && state.length > 1) {
    const alts = alternativesMask(table, state);
    if (alts) return alts;
    return shorter(table.bytes.length, allowedTokenIds(table, state));
  }
  const cap = cap0;
  if (cap < 0) return { allow: allowedTokenIds(table, state) };
  const sb = stringBodyIds(table);
  if (cap !== Infinity) {
    // Near maxLength only short tokens still fit: then the allowed list is the shorter one.
    let fit = 0;
    for (let i = 0; i < sb.openChars.length; i++) if (sb.openChars[i]! <= cap) fit++;
    if (fit < sb.open.length / 2) return { allow: allowedTokenIds(table, state) };
  }
  const deny: number[] = [];
  for (let i = 0; i < table.noBytes.length; i++) deny.push(table.noBytes[i]!);
  for (let i = 0; i < sb.invalid.length; i++) deny.push(sb.invalid[i]!);
  if (cap !== Infinity) for (let i = 0; i < sb.open.length; i++) if (sb.openChars[i]! > cap) deny.push(sb.open[i]!);
  for (let i = 0; i < sb.close.length; i++) {
    const id = sb.close[i]!;
    if (!advanceBytes(state, table.bytes[id]!)) deny.push(id);
  }
  return { deny };
}

/** The allowed list, or the refused ids when most of the vocabulary is allowed. */
function shorter(V: number, allow: number[]): TokenMask {
  if (allow.length < V / 2) return { allow };
  const ok = new Uint8Array(V);
  for (const id of allow) ok[id] = 1;
  const deny: number[] = [];
  for (let id = 0; id < V; id++) if (!ok[id]) deny.push(id);
  return { deny };
}

/**
 * Several alternatives (anyOf branches, a `contains` item read as counting and as not counting),
 * some inside a string: each string alternative's own mask (a deny list of a few thousand ids, or
 * the pattern cache's copy), the others' allowed ids from one shared walk, combined with one flag
 * per id — a token is refused when every alternative refuses it. null when no alternative is
 * inside a string (the plain walk is then the whole work).
 */
function alternativesMask(table: TokenTable, state: RecognizerState): TokenMask | null {
  if (state.length > 8) return null;
  const fast = state.filter((st) => st !== null && (patternStringState([st]) !== null || openStringCapacity([st]) >= 0));
  if (fast.length === 0) return null;
  const parts = fast.map((st) => tokenMask(table, [st]));
  const rest = state.filter((st) => !fast.includes(st));
  if (rest.some((st) => st !== null)) parts.push({ allow: allowedTokenIds(table, rest) });
  // The same parts give the same result: cached when every part is a cached list or short enough
  // to spell out (a list of tens of thousands of fresh ids costs milliseconds to allocate).
  let key: string | null = '';
  for (const p of parts) {
    const list = 'allow' in p ? p.allow : p.deny;
    const id = sharedListId(list);
    if (id !== undefined) key += `${'allow' in p ? 'A' : 'D'}#${id};`;
    else if (list.length <= 8192) key += `${'allow' in p ? 'A' : 'D'}${list.join(',')};`;
    else {
      key = null;
      break;
    }
  }
  const cache = (table.altMasks ??= new Map());
  if (key !== null) {
    const hit = cache.get(key);
    if (hit) {
      cache.delete(key);
      cache.set(key, hit);
      return hit;
    }
  }
  const m = combineMasks(parts, table.bytes.length);
  if (key !== null) {
    const list = 'allow' in m ? m.allow : m.deny;
    shareList(list);
    table.altMaskIds = (table.altMaskIds ?? 0) + list.length;
    cache.set(key, m);
    while ((cache.size > MAX_ALT_MASKS || table.altMaskIds > MAX_ALT_MASK_IDS) && cache.size > 1) {
      const [k, old] = cache.entries().next().value!;
      cache.delete(k);
      table.altMaskIds -= ('allow' in old ? old.allow : old.deny).length;
    }
  }
  return m;
}

/** Combined masks kept per table: at most this many, holding at most MAX_ALT_MASK_IDS ids (8 bytes each). */
const MAX_ALT_MASKS = 64;
const MAX_ALT_MASK_IDS = 1_000_000;

/** A token is allowed when some part allows it: refused = refused by every deny list and allowed by no allow list. */
function combineMasks(parts: TokenMask[], V: number): TokenMask {
  const denies: (readonly number[])[] = [];
  const allows: (readonly number[])[] = [];
  for (const p of parts) {
    if ('deny' in p) denies.push(p.deny);
    else allows.push(p.allow);
  }
  if (denies.length === 0) {
    const seen = new Uint8Array(V);
    const out: number[] = [];
    for (const a of allows) for (const id of a) if (!seen[id]) {
      seen[id] = 1;
      out.push(id);
    }
    return shorter(V, out);
  }
  const count = new Uint8Array(V);
  for (const d of denies) for (let i = 0; i < d.length; i++) count[d[i]!]!++;
  for (const a of allows) for (let i = 0; i < a.length; i++) count[a[i]!] = 0;
  const first = denies[0]!;
  const deny: number[] = [];
  for (let i = 0; i < first.length; i++) if (count[first[i]!] === denies.length) deny.push(first[i]!);
  if (deny.length <= V / 2) return { deny };
  // Mostly refused (short strings near their maxLength): the allowed ids are the shorter list.
  count.fill(0);
  for (const id of deny) count[id] = 1;
  const allow: number[] = [];
  for (let id = 0; id < V; id++) if (!count[id]) allow.push(id);
  return { allow };
}
