// KV-cache size of a context, for memory estimates made outside the engine process (request
// admission and the "auto" context in main/hardening, the library's fit). Pure: no MLX import.
//
// Sliding-window layers keep a ring buffer bounded by their window (kv-cache.ts): their KV grows
// with the context only until the ring is full, then stays flat. Counting them as full layers
// would refuse long contexts that fit (Gemma 3: 5 of 6 layers slide).

/** Ring slots beyond `window - 1` with the default prefill chunk (kv-cache.ts: slack = the longest step). */
export const DEFAULT_RING_SLACK = 256;

/** The sliding-window layers' part of the KV bytes per token, and the tokens their rings hold at most. */
export interface KvSliding {
  bytesPerToken: number;
  maxTokens: number;
}

/** `bytesPerLayerToken` = 2 × kvHeads × headDim × dtype bytes (one layer's keys + values per token). */
export function kvSlidingOf(layerWindows: readonly (number | null)[], bytesPerLayerToken: number): KvSliding | null {
  const ws = layerWindows.filter((w): w is number => w !== null);
  if (ws.length === 0) return null;
  return { bytesPerToken: ws.length * bytesPerLayerToken, maxTokens: Math.max(...ws) - 1 + DEFAULT_RING_SLACK };
}

/** KV bytes of a `tokens`-long context: `perToken` (all layers) until the rings are full, the full layers' part after. */
export function kvBytesFor(perToken: number, sliding: KvSliding | null | undefined, tokens: number): number {
  const t = Math.max(0, tokens);
  return perToken * t - (sliding ? sliding.bytesPerToken * Math.max(0, t - sliding.maxTokens) : 0);
}

/**
 * The longest context whose KV (kvBytesFor) plus `extraPerToken` bytes per token fits in `room`
 * bytes. Infinity when the cost stops growing (every layer slides and nothing else grows).
 */
export function tokensForBytes(perToken: number, sliding: KvSliding | null | undefined, room: number, extraPerToken = 0): number {
  if (!(room > 0)) return 0;
  const a = perToken + extraPerToken;
  if (!(a > 0)) return Infinity;
  const t = Math.floor(room / a);
  if (!sliding || t <= sliding.maxTokens) return t;
  const b = a - sliding.bytesPerToken;
  if (!(b > 0)) return Infinity;
  return Math.max(sliding.maxTokens, Math.floor((room - sliding.bytesPerToken * sliding.maxTokens) / b));
}
