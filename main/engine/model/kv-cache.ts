// Per-layer KV cache in preallocated buffers written in place.
//
// Why in place: this binding frees an MLX array only when V8 collects its JS wrapper. A cache that
// grows by concatenation makes a new O(tokens) array per layer per step; under JS allocation
// pressure (detokenizer, IPC) those wrappers get promoted to V8's old generation and the garbage
// piles up until a major GC (measured: +1 GB RSS over 1,000 steps of a tiny model). `indexPut_`
// instead rebinds the same JS object to the updated array, and MLX donates the buffer when nothing
// else shares it, so a decode step writes one token's keys/values with no garbage at all.
//
// Full-attention layers: the buffers are never sliced for one-token steps: the forward pass
// attends over the whole capacity with an additive mask (slots past the current position are
// -inf), so no view keeps a reference to the buffer data (which would force a copy on the next
// write).
//
// Sliding-window layers (Gemma 3's local layers, Mistral / Qwen2 configs with a window) keep a
// ring buffer bounded by the window, as mlx-lm's RotatingKVCache does, so their memory stays flat
// however long the sequence gets. Differences from mlx-lm, written for this engine:
//  - position q lives in slot q mod capacity, always (mlx-lm concatenates multi-token steps in
//    temporal order and rotates one-token ones). Attention does not care about key order once
//    rope has been applied, so every step writes in place and attends over the ring with a mask
//    built from each slot's position (keys outside the window, not yet written, or stale are -inf);
//  - capacity = window - 1 + slack, slack >= the longest step (a prefill chunk, a lookup verify
//    pass): a step of L tokens then never overwrites a key one of its own queries still needs, and
//    the last step's tokens can be dropped again (lookup decoding's rollback of rejected drafts
//    stays exact — mlx-lm's rotating cache cannot be trimmed once it wrapped). A longer step than
//    planned re-lays the ring out into a bigger one;
//  - the cache tracks the oldest position it still holds (`lo`), so `canTruncate(len)` says
//    exactly which prefix lengths a snapshot can be rewound to (the prefix cache asks it).
//
// Snapshots (prefix cache) are views. MLX arrays are copy-on-write here: writing into a buffer
// that a snapshot still shares copies it first, so a snapshot is never disturbed (tested in the
// engine tests).
import { core as mx } from '@frost-beta/mlx';
import type { KVBufferPool } from './kv-pool.ts';

/** Capacity grows in steps of this many tokens. */
export const KV_STEP = 256;

/** Per layer: null = full attention, n = sliding window of n tokens (a query sees itself and n-1 earlier keys). */
export type KVLayout = readonly (number | null)[];

export interface KVCacheOptions {
  /**
   * Ring slots beyond `window - 1` for sliding-window layers: the longest step planned (prefill
   * chunk, lookup verify pass). Longer steps still work (the ring is re-laid out). Default KV_STEP.
   */
  slack?: number;
  /**
   * One-token steps on full-attention layers attend over the used slots only (a view, no mask)
   * instead of the whole capacity with an additive mask. Default DECODE_USED_VIEW.
   */
  decodeUsedView?: boolean;
  /**
   * Full-attention layers take their buffers from this pool and give them back on `release()`
   * (kv-pool.ts). A pooled buffer may have more slots than the cache's capacity: the cache then
   * attends over the first `capacity` slots only, and grows into the rest without copying.
   */
  pool?: KVBufferPool | null;
}

/**
 * Default of KVCacheOptions.decodeUsedView. Measured (bench sliding-kv `usedView`, 2,048-token prompt +
 * 3,072 decode steps, both paths interleaved step by step, load ~10): the view was 0.98x the mask
 * path's time per step (noise level), and no step copied the buffer (page faults and RSS followed
 * the context in both). No win measured, so the whole-capacity path stays the default; the option
 * and the exactness tests stay for a quiet-box rerun.
 */
export const DECODE_USED_VIEW = false;

interface Ring {
  readonly window: number;
  /** Allocated slots (0 before the first update); position q lives in slot q mod cap. */
  cap: number;
  /** Oldest position held: positions lo..offset-1 are in the ring. */
  lo: number;
  /** One past the highest position ever written (rejected drafts included). */
  hi: number;
}

interface Step {
  L: number;
  fullWidth: number;
  ringWidth: number[];
  masks: Map<number, mx.array | undefined>;
}

const all = () => mx.Slice();
const roundUp = (n: number) => Math.ceil(n / KV_STEP) * KV_STEP;

/** The cache for a model: its layers' sliding windows decide which layers get a ring buffer. */
export function kvCacheFor(config: { layerWindows: KVLayout }, opts: KVCacheOptions = {}): KVCache {
  return new KVCache(config.layerWindows, opts);
}

/**
 * Additive causal mask [L, width]: query i (absolute position offset+i) sees keys 0..offset+i.
 * `width` is the KV buffer capacity (>= offset+L); slots past the current position are masked.
 * With a sliding `window`, query p sees only keys p-window+1..p (HF/mlx-lm semantics).
 */
export function causalMask(L: number, offset: number, width = offset + L, window: number | null = null): mx.array {
  const cols = mx.arange(0, width, 1, mx.int32).reshape(1, width);
  return positionMask(L, offset, cols, window, null);
}

/**
 * Mask for keys at positions `cols` [1, width]: visible iff key <= query, key > query - window and
 * (rings) key >= lo, the oldest position held (never-written slots have negative positions).
 */
function positionMask(L: number, offset: number, cols: mx.array, window: number | null, lo: number | null): mx.array {
  const rows = mx.arange(offset, offset + L, 1, mx.int32).reshape(L, 1);
  let visible = mx.lessEqual(cols, rows);
  if (window !== null) visible = mx.logicalAnd(visible, mx.greater(cols, mx.subtract(rows, mx.array(window, mx.int32))));
  if (lo !== null) visible = mx.logicalAnd(visible, mx.greaterEqual(cols, mx.array(lo, mx.int32)));
  return mx.where(visible, mx.array(0, mx.float32), mx.array(-Infinity, mx.float32));
}

/** Position held by each of the first `width` slots of a ring of `cap` slots whose newest position is `e` (negative = never written). */
function slotPositions(width: number, cap: number, e: number): number[] {
  const pos = new Array<number>(width);
  for (let s = 0; s < width; s++) pos[s] = s + cap * Math.floor((e - s) / cap);
  return pos;
}

function sameLayout(a: KVLayout, b: KVLayout): boolean {
  return a.length === b.length && a.every((w, i) => w === b[i]);
}

/** Keys/values buffers are [1, kvHeads, slots, headDim]. */
export class KVCache {
  private windows: (number | null)[] = [];
  /** Per layer: -1 = full attention, else the index of its ring in `rings` (one per distinct window). */
  private group: number[] = [];
  private rings: Ring[] = [];
  private hasFull = false;
  /** Made from a layer count and never used: takes the model's layout on the first step. */
  private adoptable: boolean;
  private keys: (mx.array | null)[];
  private values: (mx.array | null)[];
  private _offset = 0;
  private readonly slack: number;
  private readonly decodeUsedView: boolean;
  private readonly pool: KVBufferPool | null;
  /** Full-attention layers' capacity when their buffers were allocated here (0: the buffers' own size). */
  private fullCap = 0;
  /** Per layer: the buffers were allocated by this cache (not views of another's) and are its own to give to the pool. */
  private owned: boolean[];
  /** Buffers this cache's views belong to, handed over by the cache that wrote them (prefix-cache entries). */
  private backing: mx.array[] = [];
  /** Full-layer capacity the current step uses (set by reserve). */
  private planned = 0;
  /** Token count the sequence is expected to reach (see expect); growth allocates at least this. */
  private expected = 0;
  private step: Step | null = null;

  /** `layout`: a layer count (all full attention, or the model's layout on first use) or per-layer windows. */
  constructor(layout: number | KVLayout, opts: KVCacheOptions = {}) {
    const windows = typeof layout === 'number' ? new Array<number | null>(layout).fill(null) : layout.slice();
    this.adoptable = typeof layout === 'number';
    this.slack = Math.max(1, Math.floor(opts.slack ?? KV_STEP));
    this.decodeUsedView = opts.decodeUsedView ?? DECODE_USED_VIEW;
    this.pool = opts.pool ?? null;
    this.setLayout(windows);
    this.keys = new Array(windows.length).fill(null);
    this.values = new Array(windows.length).fill(null);
    this.owned = new Array(windows.length).fill(false);
  }

  private setLayout(windows: (number | null)[]): void {
    for (const w of windows) {
      if (w !== null && !(Number.isInteger(w) && w >= 1)) throw new Error(`KV cache: invalid sliding window ${w}`);
    }
    this.windows = windows;
    const ringOf = new Map<number, number>();
    this.rings = [];
    this.group = windows.map((w) => {
      if (w === null) return -1;
      let r = ringOf.get(w);
      if (r === undefined) {
        r = this.rings.length;
        ringOf.set(w, r);
        this.rings.push({ window: w, cap: 0, lo: 0, hi: 0 });
      }
      return r;
    });
    this.hasFull = this.group.includes(-1);
  }

  /**
   * Checks the cache is laid out for the model's per-layer `windows` (the forward pass calls this).
   * A cache made from a layer count and still empty adopts them; any other mismatch would silently
   * attend over the wrong keys, so it throws.
   */
  useLayout(windows: KVLayout): void {
    if (sameLayout(this.windows, windows)) return;
    if (this.adoptable && windows.length === this.windows.length && this._offset === 0 && this.keys.every((k) => !k)) {
      this.setLayout(windows.slice());
      this.adoptable = false;
      return;
    }
    throw new Error('KV cache layout does not match the model (sliding-window layers)');
  }

  get layout(): KVLayout {
    return this.windows;
  }

  get numLayers(): number {
    return this.keys.length;
  }

  /** Number of valid tokens. */
  get offset(): number {
    return this._offset;
  }

  /** Current capacity in tokens of the full-attention layers (of the rings when there are none; 0 before the first update). */
  get capacity(): number {
    const i = this.hasFull ? this.group.indexOf(-1) : 0;
    return this.hasFull && this.fullCap > 0 ? this.fullCap : this.slots(i);
  }

  /** Allocated slots of one layer's buffers (0 before its first update). */
  slots(layer: number): number {
    const k = this.keys[layer];
    return k ? k.shape[2] : 0;
  }

  /**
   * The sequence is expected to reach `tokens` tokens (e.g. the whole prompt before a chunked
   * prefill): the next growth allocates that capacity at once instead of 256 more slots per chunk,
   * each of which would copy every layer's buffer into fresh (page-faulted) memory — measured as
   * 10-20% of a long prefill's CPU time in system time. Rings never grow past their bound.
   */
  expect(tokens: number): void {
    this.expected = Math.max(this.expected, tokens);
  }

  /** Makes room for `n` more tokens on every layer. Call once per forward step before the layers' `update`s. */
  reserve(n: number): void {
    const p = this._offset;
    if (this.hasFull) {
      const cap = this.capacity;
      if (cap >= p + n && cap > 0) this.planned = cap;
      else {
        const newCap = roundUp(Math.max(p + n, this.expected));
        // Pooled buffers may already have the room (their extra slots were zeroed when taken).
        const roomy = this.keys.every((k, i) => this.group[i] >= 0 || (k !== null && this.owned[i] && k.shape[2] >= newCap));
        if (!roomy) {
          for (let i = 0; i < this.keys.length; i++) {
            if (this.group[i] >= 0) continue;
            this.keys[i] = this.grow(i, this.keys[i], newCap);
            this.values[i] = this.grow(i, this.values[i], newCap);
          }
        }
        if (this.keys.some((k, i) => k && this.group[i] < 0)) this.fullCap = newCap;
        this.planned = newCap;
      }
    }
    this.rings.forEach((_, ri) => this.reserveRing(ri, n));
    this.step = {
      L: n,
      fullWidth: n > 1 || this.decodeUsedView ? p + n : this.planned,
      ringWidth: this.rings.map((r) => (n > 1 ? Math.min(r.cap, Math.max(r.hi, p + n)) : r.cap)),
      masks: new Map(),
    };
  }

  private grow(layer: number, buf: mx.array | null, newCap: number): mx.array | null {
    if (!buf) return null; // allocated on first update, when the head shape is known
    const [b, h, , d] = buf.shape;
    const pooled = this.pool?.take(b, h, d, buf.dtype, newCap) ?? null;
    const wasOwned = this.owned[layer];
    this.owned[layer] = true;
    if (!pooled) {
      const head = this._offset > 0 ? [buf.index(all(), all(), mx.Slice(0, this._offset))] : [];
      // (The old buffer is not pooled: the concatenation still reads it.)
      return mx.concatenate([...head, mx.zeros([b, h, newCap - this._offset, d], buf.dtype)], 2);
    }
    if (this._offset > 0) pooled.indexPut_([all(), all(), mx.Slice(0, this._offset)], buf.index(all(), all(), mx.Slice(0, this._offset)));
    // The copy above still reads the old buffer: a later taker's first write copies instead of
    // writing in place (copy-on-write), never the other way round.
    if (wasOwned) this.pool!.give(buf);
    return pooled;
  }

  /** A new full-attention buffer [b, h, slots >= cap, d]: from the pool when it has one, else zeros. */
  private allocate(layer: number, shape: number[], dtype: mx.Dtype, cap: number): mx.array {
    const [b, h, , d] = shape;
    this.owned[layer] = true;
    return this.pool?.take(b, h, d, dtype, cap) ?? mx.zeros([b, h, cap, d], dtype);
  }

  /**
   * A step of `L` tokens at `p` is safe in a ring of `cap` slots when its writes cannot overwrite a
   * key one of its queries needs (cap >= window - 1 + L), or when everything still fits without
   * wrapping.
   */
  private ringFits(r: Ring, cap: number, L: number): boolean {
    return cap >= r.window - 1 + L || (r.hi <= cap && this._offset + L <= cap);
  }

  private reserveRing(ri: number, L: number): void {
    const r = this.rings[ri];
    if (r.cap > 0 && this.ringFits(r, r.cap, L)) return;
    const p = this._offset;
    const maxCap = r.window - 1 + Math.max(this.slack, L);
    let newCap = Math.min(maxCap, roundUp(Math.max(p + L, this.expected)));
    if (newCap <= r.cap || !this.ringFits(r, newCap, L)) newCap = Math.max(maxCap, r.cap);
    const allocated = this.group.some((g, i) => g === ri && this.keys[i]);
    if (allocated) {
      let relayout: (buf: mx.array) => mx.array;
      if (r.hi <= r.cap) {
        // Never wrapped: slot = position everywhere; extend with empty slots.
        relayout = (buf) => {
          const [b, h, , d] = buf.shape;
          return mx.concatenate([buf, mx.zeros([b, h, newCap - r.cap, d], buf.dtype)], 2);
        };
      } else {
        // Wrapped: move the positions later queries can still need to their slots in the bigger ring.
        const from = Math.max(r.lo, p - r.window + 1);
        const idx = slotPositions(newCap, newCap, p - 1).map((q) => (q >= from && q < p ? q % r.cap : 0));
        const at = mx.array(idx, mx.int32);
        relayout = (buf) => mx.take(buf, at, 2);
        r.lo = from;
        r.hi = p;
      }
      for (let i = 0; i < this.keys.length; i++) {
        if (this.group[i] !== ri || !this.keys[i]) continue;
        this.keys[i] = relayout(this.keys[i]!);
        this.values[i] = relayout(this.values[i]!);
      }
    }
    r.cap = newCap;
  }

  /**
   * Writes this step's keys/values [1, kvHeads, L, headDim] for one layer at the current offset and
   * returns what the step attends over (with `mask(layer)`): one-token steps the whole buffer,
   * multi-token steps only the slots in use. Call `commit(L)` once every layer of the step is done.
   */
  update(layer: number, k: mx.array, v: mx.array): [mx.array, mx.array] {
    const L = k.shape[2];
    const st = this.step;
    if (!st || st.L !== L) throw new Error('KVCache.update without reserve()');
    const g = this.group[layer];
    const p = this._offset;
    const cap = g < 0 ? this.planned : this.rings[g].cap;
    if (!this.keys[layer]) {
      const [b, h, , d] = k.shape;
      if (g < 0) {
        this.keys[layer] = this.allocate(layer, k.shape, k.dtype, cap);
        this.values[layer] = this.allocate(layer, v.shape, v.dtype, cap);
        this.fullCap = cap;
      } else {
        this.keys[layer] = mx.zeros([b, h, cap, d], k.dtype);
        this.values[layer] = mx.zeros([b, h, cap, d], v.dtype);
      }
    }
    const keys = this.keys[layer]!;
    const values = this.values[layer]!;
    const s0 = p % cap; // = p for full layers (cap > p)
    const n1 = Math.min(L, cap - s0);
    const part = (a: mx.array, from: number, to: number) => (from === 0 && to === L ? a : a.index(all(), all(), mx.Slice(from, to)));
    keys.indexPut_([all(), all(), mx.Slice(s0, s0 + n1)], part(k, 0, n1));
    values.indexPut_([all(), all(), mx.Slice(s0, s0 + n1)], part(v, 0, n1));
    if (n1 < L) {
      // The step wraps around the ring's end.
      keys.indexPut_([all(), all(), mx.Slice(0, L - n1)], part(k, n1, L));
      values.indexPut_([all(), all(), mx.Slice(0, L - n1)], part(v, n1, L));
    }
    const width = g < 0 ? st.fullWidth : st.ringWidth[g];
    if (width >= keys.shape[2]) return [keys, values];
    // Multi-token steps attend only over the slots in use (a capacity reserved ahead for the rest
    // of the prompt would otherwise be scored and softmaxed for nothing). The views are freed
    // with the step's other temporaries before the next write (generator GC policy).
    const used = mx.Slice(0, width);
    return [keys.index(all(), all(), used), values.index(all(), all(), used)];
  }

  /**
   * The additive mask [L, width] of this step for one layer (undefined when nothing needs hiding),
   * in `dtype`; built once per layer group and step. Call between `reserve` and `commit`.
   */
  mask(layer: number, dtype: mx.Dtype): mx.array | undefined {
    const st = this.step;
    if (!st) throw new Error('KVCache.mask without reserve()');
    const g = this.group[layer];
    if (st.masks.has(g)) return st.masks.get(g);
    const p = this._offset;
    const L = st.L;
    let m: mx.array | undefined;
    if (g < 0) {
      m = L > 1 || st.fullWidth > p + L ? causalMask(L, p, st.fullWidth) : undefined;
    } else {
      const r = this.rings[g];
      const width = st.ringWidth[g];
      const cols = mx.array(slotPositions(width, r.cap, p + L - 1), mx.int32).reshape(1, width);
      m = positionMask(L, p, cols, r.window, r.lo);
    }
    if (m && m.dtype !== dtype) m = m.astype(dtype);
    st.masks.set(g, m);
    return m;
  }

  /** Advances the offset after a forward step of `n` tokens over every layer. */
  commit(n: number): void {
    this._offset += n;
    for (const r of this.rings) {
      r.hi = Math.max(r.hi, this._offset);
      if (r.cap > 0) r.lo = Math.max(r.lo, r.hi - r.cap);
    }
    this.step = null;
  }

  /**
   * Hands this cache's own buffers to `snap`, a snapshot of it that outlives it (a prefix-cache
   * entry): the snapshot gives them to the pool when it is released. Call when this cache is done.
   */
  handOver(snap: KVCache): void {
    for (let i = 0; i < this.keys.length; i++) {
      if (!this.owned[i]) continue;
      snap.backing.push(this.keys[i]!, this.values[i]!);
      this.owned[i] = false;
    }
  }

  /**
   * The end of this cache's life: its own buffers (and those its views belong to) go back to the
   * pool, and it is empty again. Nothing else may write through these buffers' JS objects.
   */
  release(): void {
    const out = this.backing;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.owned[i]) out.push(this.keys[i]!, this.values[i]!);
    }
    this.backing = [];
    this.keys.fill(null);
    this.values.fill(null);
    this.owned.fill(false);
    this._offset = 0;
    this.fullCap = 0;
    this.expected = 0;
    this.step = null;
    this.setLayout(this.windows);
    this.pool?.give(...out);
  }

  /** Independent copy holding the first `offset` tokens (views; copy-on-write keeps it intact). */
  snapshot(): KVCache {
    const snap = new KVCache(this.windows, { slack: this.slack, decodeUsedView: this.decodeUsedView, pool: this.pool });
    snap.adoptable = this.adoptable;
    snap._offset = this._offset;
    snap.rings.forEach((r, i) => Object.assign(r, { cap: this.rings[i].cap, lo: this.rings[i].lo, hi: this.rings[i].hi }));
    for (let i = 0; i < this.keys.length; i++) {
      const k = this.keys[i];
      const v = this.values[i];
      if (!k || !v) continue;
      const n = this.group[i] < 0 ? this._offset : k.shape[2];
      if (n === 0) continue;
      snap.keys[i] = k.index(all(), all(), mx.Slice(0, n));
      snap.values[i] = v.index(all(), all(), mx.Slice(0, n));
    }
    return snap;
  }

  /**
   * Whether the cache can be rewound to its first `len` tokens: always for full-attention layers;
   * a ring only while it still holds the last window-1 keys before `len`.
   */
  canTruncate(len: number): boolean {
    if (!Number.isInteger(len) || len < 0 || len > this._offset) return false;
    if (len === this._offset) return true;
    return this.rings.every((r) => Math.max(0, len - r.window + 1) >= r.lo);
  }

  /**
   * Drops the last `n` tokens; returns how many were dropped. Throws when a sliding-window layer
   * cannot restore them (the ring only keeps the last step's worth beyond its window).
   */
  trim(n: number): number {
    const drop = Math.max(0, Math.min(n, this._offset));
    if (!this.canTruncate(this._offset - drop)) throw new Error(`KV cache: a sliding-window layer cannot drop ${drop} tokens`);
    this._offset -= drop;
    return drop;
  }

  /** Keeps only the first `len` tokens (later slots are masked and overwritten); see canTruncate. */
  truncate(len: number): void {
    if (len < this._offset) this.trim(this._offset - Math.max(0, len));
  }

  /** The buffers, to evaluate alongside a step's output. */
  arrays(): mx.array[] {
    const out: mx.array[] = [];
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i]) out.push(this.keys[i]!, this.values[i]!);
    }
    return out;
  }

  /**
   * Valid keys/values of one layer in position order ([1, kvHeads, n, headDim]), e.g. for export:
   * a full layer holds positions 0..offset-1, a ring the positions `start`..offset-1 it still has.
   */
  layer(i: number): { keys: mx.array | null; values: mx.array | null; start: number } {
    const k = this.keys[i];
    const v = this.values[i];
    const g = this.group[i];
    const start = g < 0 ? 0 : Math.min(this.rings[g].lo, this._offset);
    if (!k || !v || this._offset === start) return { keys: null, values: null, start };
    if (g < 0 || this._offset <= this.rings[g].cap) {
      const s = mx.Slice(start, this._offset);
      return { keys: k.index(all(), all(), s), values: v.index(all(), all(), s), start };
    }
    const cap = this.rings[g].cap;
    const at = mx.array(Array.from({ length: this._offset - start }, (_, j) => (start + j) % cap), mx.int32);
    return { keys: mx.take(k, at, 2), values: mx.take(v, at, 2), start };
  }

  /**
   * Rebuilds a cache from per-layer keys/values in position order (what `layer(i)` gives): full
   * layers hold all `tokens` positions, ring layers at least the last window-1 of them.
   */
  static fromLayers(layout: KVLayout, tokens: number, layers: { keys: mx.array; values: mx.array }[], opts: KVCacheOptions = {}): KVCache {
    const c = new KVCache(layout, opts);
    if (layers.length !== c.numLayers) throw new Error('KV state has the wrong number of layers');
    c._offset = tokens;
    const ringStart: (number | null)[] = c.rings.map(() => null);
    layers.forEach((l, i) => {
      const n = l.keys.shape[2];
      const g = c.group[i];
      if (g < 0) {
        if (n !== tokens) throw new Error('KV state layer has the wrong shape');
        c.keys[i] = l.keys;
        c.values[i] = l.values;
        return;
      }
      const r = c.rings[g];
      if (n > tokens || n < Math.min(tokens, r.window - 1)) throw new Error('KV state layer has the wrong shape');
      const cap = r.cap || Math.min(r.window - 1 + c.slack, roundUp(tokens));
      const keep = Math.min(n, cap);
      const start = tokens - keep;
      if (ringStart[g] !== null && ringStart[g] !== start) throw new Error('KV state layer has the wrong shape');
      ringStart[g] = start;
      Object.assign(r, { cap, lo: start, hi: tokens });
      const skip = n - keep; // rows of `l` before `start`
      const idx = slotPositions(cap, cap, tokens - 1).map((q) => (q >= start && q < tokens ? q - start + skip : 0));
      const at = mx.array(idx, mx.int32);
      c.keys[i] = mx.take(l.keys, at, 2);
      c.values[i] = mx.take(l.values, at, 2);
    });
    return c;
  }

  /** Bytes held: keys + values of the valid tokens of full layers plus the whole ring of sliding-window layers. */
  bytes(): number {
    let total = 0;
    for (let i = 0; i < this.keys.length; i++) {
      const k = this.keys[i];
      if (!k) continue;
      const n = this.group[i] < 0 ? this._offset : k.shape[2];
      total += 2 * k.shape[1] * k.shape[3] * k.itemsize * n;
    }
    return total;
  }

  /** Bytes allocated for every layer's buffers (capacity, not just valid tokens). */
  allocatedBytes(): number {
    let total = 0;
    for (const a of this.arrays()) total += a.size * a.itemsize;
    return total;
  }
}
