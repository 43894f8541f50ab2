// Persistence of prefix KV entries (kind `prefix-kv`), so a restart is warm for a repeated long
// system prompt. The engine process exports an entry as plain data — token ids plus, per layer,
// the raw keys/values buffers with shape and dtype — and this store writes it as one verified file:
//   payload  = every layer's keys then values, each section 16-byte aligned (raw bytes, as given)
//   metadata = { tokens, layers: [{ shape, dtype, keys: [offset, bytes], values: [offset, bytes] }] }
// Loaded float32 sections are zero-copy Float32Array views into one freshly allocated buffer.
//
// Keyed by the exact token list (sha256 of the ids; the ids themselves are compared on read). The
// token lists of all entries stay indexed in memory, so the engine can ask which stored prefix
// shares the most tokens with a new prompt without touching the disk (findLongestPrefix), then
// load only that one. No MLX here: the engine converts arrays to/from MLX.
import { createHash } from 'node:crypto';
import type { EntryStore } from './entry-store.ts';

export type KvArray = Float32Array | Uint16Array | Int32Array | Uint32Array | Int8Array | Uint8Array;

export interface PrefixKvLayer {
  keys: ArrayBufferView;
  values: ArrayBufferView;
  /** e.g. [1, kvHeads, tokens, headDim] */
  shape: number[];
  dtype: string;
}

export interface PrefixKvEntry {
  tokens: number[];
  layers: PrefixKvLayer[];
}

export interface LoadedPrefixKvLayer extends PrefixKvLayer {
  keys: KvArray;
  values: KvArray;
}

export interface LoadedPrefixKvEntry {
  tokens: number[];
  layers: LoadedPrefixKvLayer[];
}

export interface PrefixEntryInfo {
  tokens: number[];
  tokenCount: number;
  bytes: number;
}

interface LayerLayout {
  shape: number[];
  dtype: string;
  keys: [number, number];
  values: [number, number];
}

interface PrefixMeta {
  tokens: number[];
  layers: LayerLayout[];
}

/** Bytes per element; float16/bfloat16 travel as raw 16-bit words. */
const DTYPE_BYTES: Record<string, number> = { float32: 4, float16: 2, bfloat16: 2, int32: 4, uint32: 4, int8: 1, uint8: 1 };

function viewFor(dtype: string, buf: ArrayBuffer, offset: number, bytes: number): KvArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf, offset, bytes / 4);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(buf, offset, bytes / 2);
    case 'int32':
      return new Int32Array(buf, offset, bytes / 4);
    case 'uint32':
      return new Uint32Array(buf, offset, bytes / 4);
    case 'int8':
      return new Int8Array(buf, offset, bytes);
    default:
      return new Uint8Array(buf, offset, bytes);
  }
}

function align16(n: number): number {
  return (n + 15) & ~15;
}

function elements(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function validShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.length > 0 && shape.length <= 8 && shape.every((d) => Number.isSafeInteger(d) && d >= 0);
}

function validTokens(tokens: unknown): tokens is number[] {
  return Array.isArray(tokens) && tokens.length > 0 && tokens.every((t) => Number.isInteger(t) && t >= 0 && t <= 0x7fffffff);
}

/** Key material of a token list: its length and sha256 over the ids as little-endian int32. */
export function prefixKey(tokens: number[]): string {
  const ids = Int32Array.from(tokens);
  const h = createHash('sha256').update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength)).digest('hex');
  return `kv1:${tokens.length}:${h}`;
}

function commonPrefix(a: number[], b: number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

export class PrefixStore {
  constructor(private readonly store: EntryStore) {
    if (store.kind !== 'prefix-kv') throw new Error('PrefixStore needs a prefix-kv EntryStore');
  }

  /**
   * Persists one entry (atomically). Resolves true once durable, false when refused (invalid
   * layout, over budget, cache disabled, I/O error). Never rejects. Throws nothing.
   */
  async save(entry: PrefixKvEntry): Promise<boolean> {
    if (!entry || !validTokens(entry.tokens) || !Array.isArray(entry.layers) || entry.layers.length === 0) return false;
    const layout: LayerLayout[] = [];
    let off = 0;
    for (const l of entry.layers) {
      const bpe = DTYPE_BYTES[l?.dtype];
      if (!bpe || !validShape(l.shape) || !ArrayBuffer.isView(l.keys) || !ArrayBuffer.isView(l.values)) return false;
      const bytes = elements(l.shape) * bpe;
      if (l.keys.byteLength !== bytes || l.values.byteLength !== bytes) return false;
      const k: [number, number] = [off, bytes];
      off = align16(off + bytes);
      const v: [number, number] = [off, bytes];
      off = align16(off + bytes);
      layout.push({ shape: [...l.shape], dtype: l.dtype, keys: k, values: v });
    }
    if (off > this.store.maxBytes) return false;
    // Payload as chunks (layer views + zero padding): the KV is never copied into one big buffer.
    const chunks: Uint8Array[] = [];
    let pos = 0;
    const pad = (to: number) => {
      if (to > pos) chunks.push(new Uint8Array(to - pos));
      pos = to;
    };
    entry.layers.forEach((l, i) => {
      for (const [arr, [at, len]] of [[l.keys, layout[i].keys], [l.values, layout[i].values]] as const) {
        pad(at);
        chunks.push(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
        pos += len;
      }
    });
    pad(off);
    const meta: PrefixMeta = { tokens: [...entry.tokens], layers: layout };
    return this.store.set(prefixKey(entry.tokens), chunks, meta);
  }

  /** Loads the entry stored for exactly `tokens`, or null. Never throws. */
  async load(tokens: number[]): Promise<LoadedPrefixKvEntry | null> {
    if (!validTokens(tokens)) return null;
    const key = prefixKey(tokens);
    const got = await this.store.get(key);
    if (!got) return null;
    const meta = got.data as PrefixMeta;
    const payload = got.payload;
    const ok =
      meta &&
      validTokens(meta.tokens) &&
      meta.tokens.length === tokens.length &&
      commonPrefix(meta.tokens, tokens) === tokens.length &&
      Array.isArray(meta.layers) &&
      meta.layers.every((l) => {
        const bpe = DTYPE_BYTES[l?.dtype];
        if (!bpe || !validShape(l.shape)) return false;
        const bytes = elements(l.shape) * bpe;
        return [l.keys, l.values].every(
          (s) => Array.isArray(s) && s[1] === bytes && Number.isSafeInteger(s[0]) && s[0] >= 0 && s[0] % 16 === 0 && s[0] + s[1] <= payload.length,
        );
      });
    if (!ok) {
      // Checksummed but inconsistent: a writer bug. Drop it rather than hand garbage to MLX.
      void this.store.delete(key);
      return null;
    }
    // The payload's byteOffset in its (unpooled) buffer is 16-aligned; re-copy if it ever is not.
    let buf = payload;
    if (buf.byteOffset % 16 !== 0) {
      buf = Buffer.from(new Uint8Array(buf));
    }
    const ab = buf.buffer as ArrayBuffer;
    const base = buf.byteOffset;
    return {
      tokens: meta.tokens,
      layers: meta.layers.map((l) => ({
        shape: l.shape,
        dtype: l.dtype,
        keys: viewFor(l.dtype, ab, base + l.keys[0], l.keys[1]),
        values: viewFor(l.dtype, ab, base + l.values[0], l.values[1]),
      })),
    };
  }

  /** Stored prefixes (most recently used first), from the in-memory index. */
  list(): PrefixEntryInfo[] {
    return this.store.entries().map((e) => {
      const tokens = (e.data as PrefixMeta | undefined)?.tokens ?? [];
      return { tokens, tokenCount: tokens.length, bytes: e.bytes };
    });
  }

  /**
   * The stored entry sharing the longest token prefix with `promptTokens` (at least `minTokens`),
   * without disk I/O. `commonTokens` may be shorter than the entry: the engine then uses the first
   * `commonTokens` positions of the loaded KV.
   */
  findLongestPrefix(promptTokens: number[], minTokens = 1): { tokens: number[]; commonTokens: number } | null {
    let best: { tokens: number[]; commonTokens: number } | null = null;
    for (const e of this.list()) {
      const c = commonPrefix(e.tokens, promptTokens);
      if (c >= minTokens && (!best || c > best.commonTokens || (c === best.commonTokens && e.tokens.length < best.tokens.length))) {
        best = { tokens: e.tokens, commonTokens: c };
      }
    }
    return best;
  }

  /** findLongestPrefix + load in one call. */
  async loadLongestPrefix(promptTokens: number[], minTokens = 1): Promise<{ entry: LoadedPrefixKvEntry; commonTokens: number } | null> {
    const best = this.findLongestPrefix(promptTokens, minTokens);
    if (!best) return null;
    const entry = await this.load(best.tokens);
    return entry ? { entry, commonTokens: best.commonTokens } : null;
  }

  has(tokens: number[]): boolean {
    return validTokens(tokens) && this.store.has(prefixKey(tokens));
  }

  delete(tokens: number[]): Promise<void> {
    return validTokens(tokens) ? this.store.delete(prefixKey(tokens)) : Promise.resolve();
  }

  flush(timeoutMs?: number): Promise<boolean> {
    return this.store.flush(timeoutMs);
  }

  stats() {
    return this.store.stats();
  }
}
