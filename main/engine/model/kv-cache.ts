// Per-layer KV cache in preallocated buffers written in place.
//
// Why in place: this binding frees an MLX array only when V8 collects its JS wrapper. A cache that
// grows by concatenation makes a new O(tokens) array per layer per step; under JS allocation
// pressure (detokenizer, IPC) those wrappers get promoted to V8's old generation and the garbage
// piles up until a major GC (measured: +1 GB RSS over 1,000 steps of a tiny model). `indexPut_`
// instead rebinds the same JS object to the updated array, and MLX donates the buffer when nothing
// else shares it, so a decode step writes one token's keys/values with no garbage at all.
//
// The buffers are never sliced for attention: the forward pass attends over the whole capacity
// with an additive mask (slots past the current position are -inf), so no view keeps a reference
// to the buffer data (which would force a copy on the next write).
//
// Snapshots (prefix cache) are views of the first `offset` tokens. MLX arrays are copy-on-write
// here: writing into a buffer that a snapshot still shares copies it first, so a snapshot is never
// disturbed (tested in the engine tests).
import { core as mx } from '@frost-beta/mlx';

/** Capacity grows in steps of this many tokens. */
export const KV_STEP = 256;

const all = () => mx.Slice();

/** Keys/values buffers are [1, kvHeads, capacity, headDim]; the first `offset` slots are valid. */
export class KVCache {
  private keys: (mx.array | null)[];
  private values: (mx.array | null)[];
  private _offset: number;
  /** Capacity the next update must have (set by reserve). */
  private planned = 0;
  /** Token count the sequence is expected to reach (see expect); growth allocates at least this. */
  private expected = 0;

  constructor(numLayers: number, keys?: (mx.array | null)[], values?: (mx.array | null)[], offset = 0) {
    this.keys = keys ? keys.slice() : new Array(numLayers).fill(null);
    this.values = values ? values.slice() : new Array(numLayers).fill(null);
    this._offset = offset;
  }

  get numLayers(): number {
    return this.keys.length;
  }

  /** Number of valid tokens. */
  get offset(): number {
    return this._offset;
  }

  /** Current buffer capacity in tokens (0 before the first update). */
  get capacity(): number {
    const k = this.keys[0];
    return k ? k.shape[2] : 0;
  }

  /**
   * The sequence is expected to reach `tokens` tokens (e.g. the whole prompt before a chunked
   * prefill): the next growth allocates that capacity at once instead of 256 more slots per chunk,
   * each of which would copy every layer's buffer into fresh (page-faulted) memory — measured as
   * 10-20% of a long prefill's CPU time in system time.
   */
  expect(tokens: number): void {
    this.expected = Math.max(this.expected, tokens);
  }

  /**
   * Makes room for `n` more tokens on every layer and returns the capacity the step will attend
   * over. Call once per forward step before the layers' `update`s.
   */
  reserve(n: number): number {
    const need = this._offset + n;
    const cap = this.capacity;
    if (cap >= need && cap > 0) {
      this.planned = cap;
      return cap;
    }
    const newCap = Math.ceil(Math.max(need, this.expected) / KV_STEP) * KV_STEP;
    for (let i = 0; i < this.keys.length; i++) {
      this.keys[i] = this.grow(this.keys[i], newCap);
      this.values[i] = this.grow(this.values[i], newCap);
    }
    this.planned = newCap;
    return newCap;
  }

  private grow(buf: mx.array | null, newCap: number): mx.array | null {
    if (!buf) return null; // allocated on first update, when the head shape is known
    const [b, h, , d] = buf.shape;
    const head = this._offset > 0 ? [buf.index(all(), all(), mx.Slice(0, this._offset))] : [];
    return mx.concatenate([...head, mx.zeros([b, h, newCap - this._offset, d], buf.dtype)], 2);
  }

  /**
   * Writes this step's keys/values [1, kvHeads, L, headDim] for one layer at the current offset
   * and returns the full buffers (attend with a mask over `capacity` slots). Call `commit(L)` once
   * every layer of the step is done.
   */
  update(layer: number, k: mx.array, v: mx.array): [mx.array, mx.array] {
    const L = k.shape[2];
    if (this.planned < this._offset + L) throw new Error('KVCache.update without reserve()');
    if (!this.keys[layer]) {
      const [b, h, , d] = k.shape;
      this.keys[layer] = mx.zeros([b, h, this.planned, d], k.dtype);
      this.values[layer] = mx.zeros([b, h, this.planned, d], v.dtype);
    }
    const at = [all(), all(), mx.Slice(this._offset, this._offset + L)];
    this.keys[layer]!.indexPut_(at, k);
    this.values[layer]!.indexPut_(at, v);
    return [this.keys[layer]!, this.values[layer]!];
  }

  /** Advances the offset after a forward step of `n` tokens over every layer. */
  commit(n: number): void {
    this._offset += n;
  }

  /** Independent copy holding the first `offset` tokens (views; copy-on-write keeps it intact). */
  snapshot(): KVCache {
    const view = (a: mx.array | null) => (a && this._offset > 0 ? a.index(all(), all(), mx.Slice(0, this._offset)) : null);
    return new KVCache(this.keys.length, this.keys.map(view), this.values.map(view), this._offset);
  }

  /** Drops the last `n` tokens; returns how many were dropped. */
  trim(n: number): number {
    const drop = Math.max(0, Math.min(n, this._offset));
    this._offset -= drop;
    return drop;
  }

  /** Keeps only the first `len` tokens (later slots are masked and overwritten). */
  truncate(len: number): void {
    if (len < this._offset) this._offset = Math.max(0, len);
  }

  /** The buffers, to evaluate alongside a step's output. */
  arrays(): mx.array[] {
    const out: mx.array[] = [];
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i]) out.push(this.keys[i]!, this.values[i]!);
    }
    return out;
  }

  /** Valid keys/values of one layer ([1, kvHeads, offset, headDim] views), e.g. for export. */
  layer(i: number): { keys: mx.array | null; values: mx.array | null } {
    const k = this.keys[i];
    const v = this.values[i];
    if (!k || !v || this._offset === 0) return { keys: null, values: null };
    const s = mx.Slice(0, this._offset);
    return { keys: k.index(all(), all(), s), values: v.index(all(), all(), s) };
  }

  /** Logical bytes of the valid tokens (keys + values of every layer). */
  bytes(): number {
    let total = 0;
    for (const a of this.arrays()) total += (a.shape[1] * a.shape[3] * a.itemsize) * this._offset;
    return total;
  }
}
