// Prompt prefix cache: keeps the KV state of recent prompts (an LRU of several entries under a
// byte budget) and hands out the longest common token prefix for a new prompt. Entries are
// immutable KVCache snapshots, so a request that reuses one extends its own copy and never
// disturbs the entry. Token ids are compared (not messages): chat templates may rewrite earlier
// turns, and only identical rendered tokens have identical KV.
import { core as mx } from '@frost-beta/mlx';
import { LRUCache } from 'lru-cache';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { PrefixCacheStats } from '../types.ts';
import { KVCache, type KVCacheOptions, type KVLayout } from './kv-cache.ts';

export interface PrefixCacheEntry {
  readonly id: string;
  /** The tokens whose KV the snapshot holds (cache.offset === tokens.length). */
  readonly tokens: readonly number[];
  readonly cache: KVCache;
  readonly bytes: number;
}

export interface PrefixLookup {
  /** A cache to continue from: holds exactly the first `reusedTokens` prompt tokens. */
  cache: KVCache;
  reusedTokens: number;
  entryId: string | null;
}

export interface PrefixCacheOptions {
  budgetBytes: number;
  /** Maximum number of entries regardless of bytes. */
  maxEntries?: number;
}

/**
 * Serialized entry (see exportEntry): token ids and, per layer, raw little-endian float32 keys and
 * values of shape [1, kvHeads, n, headDim] in position order: n = tokens for full-attention layers;
 * a sliding-window layer stores the last n positions its ring holds (n >= window - 1, or all tokens
 * when fewer). Matches main/caches/prefix-store's PrefixKvEntry (which keeps each layer's shape).
 */
export interface ExportedPrefixEntry {
  tokens: number[];
  layers: { keys: Float32Array; values: Float32Array; shape: number[]; dtype: 'float32' }[];
}

/** What importEntry accepts: any buffer or typed-array view holding the float32 bytes. */
export interface ImportablePrefixEntry {
  tokens: number[];
  layers: { keys: ArrayBuffer | ArrayBufferView; values: ArrayBuffer | ArrayBufferView; shape: number[]; dtype: string }[];
}

function asArrayBuffer(b: ArrayBuffer | ArrayBufferView): ArrayBuffer {
  if (b instanceof ArrayBuffer) return b;
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

export class PrefixCache {
  private lru: LRUCache<string, PrefixCacheEntry>;
  private nextId = 1;
  private budget: number;
  private readonly maxEntries: number;
  private counters = { reusedTokens: 0, computedTokens: 0, hits: 0, misses: 0 };

  constructor(opts: PrefixCacheOptions) {
    this.budget = Math.max(1, Math.floor(opts.budgetBytes));
    this.maxEntries = opts.maxEntries ?? 8;
    this.lru = this.makeLru();
  }

  private makeLru(): LRUCache<string, PrefixCacheEntry> {
    return new LRUCache<string, PrefixCacheEntry>({
      max: this.maxEntries,
      maxSize: this.budget,
      sizeCalculation: (e) => Math.max(1, e.bytes),
      // An entry that goes (evicted, made redundant, cleared) gives the buffers it was handed to
      // the KV pool (kv-pool.ts); a request still reading its views is safe (copy-on-write).
      dispose: (e) => e.cache.release(),
    });
  }

  /** Changes the byte budget, evicting least-recently-used entries that no longer fit. */
  setBudget(bytes: number): void {
    const old = [...this.lru.rkeys()].map((k) => this.lru.peek(k)!); // least recently used first
    this.budget = Math.max(1, Math.floor(bytes));
    this.lru = this.makeLru();
    for (const e of old) this.lru.set(e.id, e);
  }

  /**
   * Finds the entry sharing the longest token prefix with `promptIds` and returns a cache holding
   * that prefix (at most promptIds.length - 1 tokens: the last prompt token is always computed so
   * there are logits to sample from). An entry whose sliding-window rings no longer hold the keys
   * before the common prefix's end (it diverges more than the ring's slack before the entry's
   * end) cannot be rewound there and is not used. `layout` / `opts` make the cache of a miss.
   * Records hit/miss and reused/computed token counts.
   */
  lookup(promptIds: readonly number[], layout: number | KVLayout, opts: KVCacheOptions = {}): PrefixLookup {
    let best: PrefixCacheEntry | null = null;
    let bestLen = 0;
    const limit = promptIds.length - 1;
    for (const e of this.lru.values()) {
      const n = Math.min(e.tokens.length, limit);
      let i = 0;
      while (i < n && e.tokens[i] === promptIds[i]) i++;
      if (i > bestLen && e.cache.canTruncate(i)) {
        bestLen = i;
        best = e;
      }
    }
    if (!best || bestLen === 0) {
      this.counters.misses++;
      this.counters.computedTokens += promptIds.length;
      return { cache: new KVCache(layout, opts), reusedTokens: 0, entryId: null };
    }
    this.lru.get(best.id); // mark as recently used
    const cache = best.cache.snapshot();
    cache.truncate(bestLen);
    this.counters.hits++;
    this.counters.reusedTokens += bestLen;
    this.counters.computedTokens += promptIds.length - bestLen;
    return { cache, reusedTokens: bestLen, entryId: best.id };
  }

  /**
   * Stores the KV state of `tokens` (cache.offset must equal tokens.length). Entries that are a
   * prefix of the new one become redundant and are dropped; if an existing entry already covers
   * `tokens` it is only refreshed. Returns false when the entry exceeds the whole budget.
   */
  store(tokens: readonly number[], cache: KVCache): boolean {
    if (tokens.length === 0 || cache.offset !== tokens.length) {
      throw new Error(`prefix cache store: cache holds ${cache.offset} tokens, expected ${tokens.length}`);
    }
    for (const [id, e] of [...this.lru.entries()]) {
      const n = Math.min(e.tokens.length, tokens.length);
      let i = 0;
      while (i < n && e.tokens[i] === tokens[i]) i++;
      if (i === n) {
        // (Sliding-window rings can only be rewound by a bounded number of tokens: an entry
        // counts as covered only if the longer one can be rewound to its length.)
        if (e.tokens.length >= tokens.length) {
          if (!e.cache.canTruncate(tokens.length)) continue;
          this.lru.get(id);
          return true; // already covered by a longer (or equal) entry
        }
        if (cache.canTruncate(e.tokens.length)) this.lru.delete(id); // strictly shorter prefix of the new entry
      }
    }
    const snap = cache.snapshot();
    mx.eval(...snap.arrays()); // materialize the views now (the live cache may be written next)
    const bytes = snap.bytes();
    if (bytes > this.budget) return false;
    const id = `p${this.nextId++}`;
    cache.handOver(snap);
    this.lru.set(id, { id, tokens: tokens.slice(), cache: snap, bytes });
    return true;
  }

  /** Adds an imported entry (e.g. from disk) as most recently used. */
  add(tokens: readonly number[], cache: KVCache): boolean {
    return this.store(tokens, cache);
  }

  entries(): PrefixCacheEntry[] {
    return [...this.lru.values()];
  }

  clear(): void {
    this.lru.clear();
  }

  stats(): PrefixCacheStats {
    let bytes = 0;
    for (const e of this.lru.values()) bytes += e.bytes;
    return { entries: this.lru.size, bytes, budgetBytes: this.budget, ...this.counters };
  }
}

// ---- Serialization hooks (the caches layer wraps these in an integrity-checked file) ----------

function withTempDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(path.join(tmpdir(), 'mlxbar-kv-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Minimal safetensors reader for the float32 tensors we write ourselves. */
function readSafetensors(buf: Buffer): Map<string, { shape: number[]; data: ArrayBuffer }> {
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + n;
  const out = new Map<string, { shape: number[]; data: ArrayBuffer }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F32') throw new Error('unexpected dtype in KV export');
    const [a, b] = t.data_offsets;
    out.set(name, { shape: t.shape, data: buf.buffer.slice(buf.byteOffset + base + a, buf.byteOffset + base + b) as ArrayBuffer });
  }
  return out;
}

function writeSafetensors(tensors: [string, number[], ArrayBuffer][]): Buffer {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + data.byteLength] };
    off += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const hb = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + hb.length + off);
  out.writeBigUInt64LE(BigInt(hb.length), 0);
  hb.copy(out, 8);
  let p = 8 + hb.length;
  for (const [, , data] of tensors) {
    Buffer.from(data).copy(out, p);
    p += data.byteLength;
  }
  return out;
}

/**
 * Serializes an entry: token ids plus per-layer raw float32 keys/values (bit-exact). Goes through
 * MLX's own safetensors writer because this binding has no way to read an array's bytes directly.
 */
export function exportEntry(entry: Pick<PrefixCacheEntry, 'tokens' | 'cache'>): ExportedPrefixEntry {
  const cache = entry.cache;
  const arrays: Record<string, mx.array> = {};
  for (let i = 0; i < cache.numLayers; i++) {
    const { keys, values } = cache.layer(i);
    if (!keys || !values) throw new Error('cannot export an empty KV cache');
    arrays[`k${i}`] = keys.astype(mx.float32);
    arrays[`v${i}`] = values.astype(mx.float32);
  }
  return withTempDir((dir) => {
    const file = path.join(dir, 'kv.safetensors');
    mx.saveSafetensors(file, arrays);
    const t = readSafetensors(readFileSync(file));
    const layers: ExportedPrefixEntry['layers'] = [];
    for (let i = 0; i < cache.numLayers; i++) {
      const k = t.get(`k${i}`)!;
      const v = t.get(`v${i}`)!;
      layers.push({ keys: new Float32Array(k.data), values: new Float32Array(v.data), shape: k.shape, dtype: 'float32' });
    }
    return { tokens: entry.tokens.slice(), layers };
  });
}

/**
 * Rebuilds a KVCache from exportEntry output, validating it against the model's KV shape
 * (layers, kv heads, head dim, sliding windows) and the token count. Throws on any mismatch.
 */
export function importEntry(
  data: ImportablePrefixEntry,
  expected: { numLayers: number; numKvHeads: number; headDim: number; dtype?: mx.Dtype; layerWindows?: KVLayout },
): { tokens: number[]; cache: KVCache } {
  if (!data || !Array.isArray(data.tokens) || !Array.isArray(data.layers)) throw new Error('KV export is malformed');
  if (data.layers.length !== expected.numLayers) throw new Error('KV export has the wrong number of layers');
  const T = data.tokens.length;
  if (T === 0 || !data.tokens.every((t) => Number.isInteger(t) && t >= 0)) throw new Error('KV export has invalid tokens');
  const windows = expected.layerWindows ?? new Array<number | null>(expected.numLayers).fill(null);
  if (windows.length !== expected.numLayers) throw new Error('KV export: layer windows do not match the layer count');
  const tensors: [string, number[], ArrayBuffer][] = [];
  data.layers.forEach((l, i) => {
    const w = windows[i];
    const n = Array.isArray(l.shape) ? l.shape[2] : -1;
    // Full layers hold every token; a sliding-window layer at least the window-1 keys the next token needs.
    const okN = w === null ? n === T : Number.isInteger(n) && n <= T && n >= Math.min(T, w - 1) && n > 0;
    const want = [1, expected.numKvHeads, n, expected.headDim];
    if (l.dtype !== 'float32' || !okN || l.shape.join() !== want.join()) throw new Error('KV export layer has the wrong shape');
    const bytes = want.reduce((a, b) => a * b, 1) * 4;
    if (l.keys.byteLength !== bytes || l.values.byteLength !== bytes) throw new Error('KV export layer has the wrong size');
    tensors.push([`k${i}`, want, asArrayBuffer(l.keys)], [`v${i}`, want, asArrayBuffer(l.values)]);
  });
  return withTempDir((dir) => {
    const file = path.join(dir, 'kv.safetensors');
    writeFileSync(file, writeSafetensors(tensors));
    const loaded = mx.load(file) as unknown as Record<string, mx.array>;
    const layers: { keys: mx.array; values: mx.array }[] = [];
    for (let i = 0; i < expected.numLayers; i++) {
      // Stored as float32; held in the model's compute dtype (bf16/f16 under a native half policy).
      const cast = (a: mx.array) => (expected.dtype && a.dtype !== expected.dtype ? a.astype(expected.dtype) : a);
      layers.push({ keys: cast(loaded[`k${i}`]), values: cast(loaded[`v${i}`]) });
    }
    const cache = KVCache.fromLayers(windows, T, layers);
    mx.eval(...cache.arrays()); // read now: the temp file is deleted on return
    return { tokens: data.tokens.slice(), cache };
  });
}
