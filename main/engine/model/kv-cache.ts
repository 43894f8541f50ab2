// Per-layer KV cache that grows by concatenation. MLX arrays are immutable, so a snapshot is just a
// copy of the per-layer references: the prefix cache can keep a snapshot while a request keeps
// extending its own copy, and neither disturbs the other. (Measured here: preallocated caches
// written with indexPut_ buy nothing on this CPU, and they would make snapshots expensive.)
import { core as mx } from '@frost-beta/mlx';

/** Keys/values are [1, kvHeads, tokens, headDim]. */
export class KVCache {
  private keys: (mx.array | null)[];
  private values: (mx.array | null)[];
  /** Number of tokens whose keys/values are held. */
  private _offset: number;

  constructor(numLayers: number, keys?: (mx.array | null)[], values?: (mx.array | null)[], offset = 0) {
    this.keys = keys ? keys.slice() : new Array(numLayers).fill(null);
    this.values = values ? values.slice() : new Array(numLayers).fill(null);
    this._offset = offset;
  }

  get numLayers(): number {
    return this.keys.length;
  }

  get offset(): number {
    return this._offset;
  }

  /**
   * Appends this step's keys/values for one layer and returns the full keys/values to attend to.
   * Call `commit(L)` once all layers of the step are done.
   */
  update(layer: number, k: mx.array, v: mx.array): [mx.array, mx.array] {
    const pk = this.keys[layer];
    const pv = this.values[layer];
    const nk = pk ? mx.concatenate([pk, k], 2) : k;
    const nv = pv ? mx.concatenate([pv, v], 2) : v;
    this.keys[layer] = nk;
    this.values[layer] = nv;
    return [nk, nv];
  }

  /** Advances the offset after a forward step of `n` tokens over every layer. */
  commit(n: number): void {
    this._offset += n;
  }

  /** Cheap independent copy (shares the immutable arrays). */
  snapshot(): KVCache {
    return new KVCache(this.keys.length, this.keys, this.values, this._offset);
  }

  /** Drops the last `n` tokens; returns how many were dropped. */
  trim(n: number): number {
    const drop = Math.max(0, Math.min(n, this._offset));
    if (drop > 0) this.truncate(this._offset - drop);
    return drop;
  }

  /** Keeps only the first `len` tokens. */
  truncate(len: number): void {
    if (len >= this._offset) return;
    if (len <= 0) {
      this.keys.fill(null);
      this.values.fill(null);
      this._offset = 0;
      return;
    }
    const s = mx.Slice(0, len);
    const all = mx.Slice();
    for (let i = 0; i < this.keys.length; i++) {
      this.keys[i] = this.keys[i]!.index(all, all, s);
      this.values[i] = this.values[i]!.index(all, all, s);
    }
    this._offset = len;
  }

  /** Arrays to evaluate alongside a step's output (keeps the lazy graph from growing). */
  arrays(): mx.array[] {
    const out: mx.array[] = [];
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i]) out.push(this.keys[i]!, this.values[i]!);
    }
    return out;
  }

  layer(i: number): { keys: mx.array | null; values: mx.array | null } {
    return { keys: this.keys[i], values: this.values[i] };
  }

  /** Logical bytes held (keys + values of every layer). */
  bytes(): number {
    let total = 0;
    for (const a of this.arrays()) total += a.nbytes ?? a.size * a.itemsize;
    return total;
  }
}
