// KV buffers kept between sequences, reused in place.
//
// Why: a new sequence's KV buffers are fresh memory, and on this CPU build (MLX has no buffer
// cache off Metal) every page of it is faulted in and zeroed by the kernel during the first
// prefill chunk. Measured on the 2-core Linux VM: 56 buffers of [1, 8, 2,304, 128] float32
// (a 2,048-token prompt on the Qwen3-0.6B shape, 528 MB) took 1.43–1.63 s to materialize
// (117–130k page faults, ~12 µs each), against 72–124 ms to zero the same buffers in place.
// llama.cpp allocates its KV once per context; this is our equivalent for a server whose
// sequences come and go.
//
// Ownership: a buffer is given back only by its exclusive owner (a finished generation's cache,
// or a prefix-cache entry when it is dropped), and taken by one cache at a time. MLX arrays are
// copy-on-write here, so even a buffer some view still shares is never disturbed by the taker:
// its first write then copies (the old cost, never wrong data).
import { core as mx } from '@frost-beta/mlx';

/** Default budget: the KV of a ~4,500-token sequence on the Qwen3-0.6B shape in float32. */
export const DEFAULT_KV_POOL_BYTES = 1024 * 2 ** 20;

export interface KVPoolStats {
  buffers: number;
  bytes: number;
  budgetBytes: number;
  hits: number;
  misses: number;
}

const all = () => mx.Slice();
const bytesOf = (a: mx.array) => a.size * a.itemsize;

/** Largest buffer handed out for a request of `slots`: a bigger one would idle memory and attention work. */
export function maxSlotsFor(slots: number): number {
  return Math.ceil(slots * 1.25) + 256;
}

/**
 * Zero-fills a [b, h, slots, d] buffer in place. Two slice updates, not one: MLX turns an update of
 * the whole array into a broadcast of the value (measured: the next write then materializes fresh
 * memory — 129k page faults, 2.7 s for 56 buffers of 2,304 slots — instead of ~0 and 72–124 ms).
 */
function zeroInPlace(a: mx.array): void {
  const slots = a.shape[2];
  const zero = mx.array(0, a.dtype);
  if (slots < 2) {
    a.indexPut_([all(), all(), all()], zero);
    return;
  }
  a.indexPut_([all(), all(), mx.Slice(0, slots - 1)], zero);
  a.indexPut_([all(), all(), mx.Slice(slots - 1, slots)], zero);
}

export class KVBufferPool {
  /** Oldest first (dropped first when over budget). */
  private free: mx.array[] = [];
  private held = 0;
  private hits = 0;
  private misses = 0;
  private budget: number;

  constructor(budgetBytes = DEFAULT_KV_POOL_BYTES) {
    this.budget = Math.max(0, Math.floor(budgetBytes));
  }

  /**
   * A zero-filled buffer [b, h, slots, d] of `dtype` with minSlots <= slots <= maxSlotsFor(minSlots)
   * (the smallest that fits), or null. Zeroed because slots past a sequence's position are read
   * under an additive mask: a stale NaN/Inf from another request would survive it.
   */
  take(b: number, h: number, d: number, dtype: mx.Dtype, minSlots: number): mx.array | null {
    const max = maxSlotsFor(minSlots);
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const a = this.free[i];
      const [ab, ah, as, ad] = a.shape;
      if (a.dtype !== dtype || ab !== b || ah !== h || ad !== d || as < minSlots || as > max) continue;
      if (best < 0 || as < this.free[best].shape[2]) best = i;
    }
    if (best < 0) {
      this.misses++;
      return null;
    }
    const [a] = this.free.splice(best, 1);
    this.held -= bytesOf(a);
    this.hits++;
    zeroInPlace(a);
    return a;
  }

  /** Takes buffers back from their exclusive owner (one that will not use these JS objects again). */
  give(...arrays: mx.array[]): void {
    for (const a of arrays) {
      if (this.budget === 0 || this.free.includes(a)) continue;
      const n = bytesOf(a);
      if (n > this.budget) continue;
      this.free.push(a);
      this.held += n;
    }
    while (this.held > this.budget) this.held -= bytesOf(this.free.shift()!);
  }

  /** Drops every buffer (memory pressure); returns the bytes released. */
  clear(): number {
    const n = this.held;
    this.free = [];
    this.held = 0;
    return n;
  }

  setBudget(bytes: number): void {
    this.budget = Math.max(0, Math.floor(bytes));
    this.give();
  }

  stats(): KVPoolStats {
    return { buffers: this.free.length, bytes: this.held, budgetBytes: this.budget, hits: this.hits, misses: this.misses };
  }
}
