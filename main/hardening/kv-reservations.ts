// The KV memory that running generations may still add: reserved when a generation starts, given
// back when it ends.
//
// Why: memory admission compares a newcomer with the footprint of the latest sample. With several
// generations running at once (continuous batching), each one's KV cache keeps growing until it
// reaches prompt + max_tokens: four streams admitted while their caches were small could together
// outgrow the budget. So every running generation holds a reservation of its worst-case KV
// (kv-size.ts: prompt + max_tokens, bounded by the context, sliding-window layers only up to their
// ring), and admission counts what they have NOT grown yet as already taken.
//
// "Not grown yet" is measured against the memory sample the admission reads: when a sample starts,
// each generation's token count so far is noted (`sampleStarted`); the KV of those tokens is in
// that sample's RSS, everything beyond is still reserved. So the footprint and the reservations
// never count the same bytes twice, and a sample that lags a second behind never hides growth.
import type { ModelInfo } from '../engine/types.ts';
import { kvBytesFor, type KvSliding } from '../engine/model/kv-size.ts';

/** One running generation's hold on memory. */
export interface KvReservation {
  /** The generation's KV now holds `tokens` tokens (prompt processed + generated). */
  progress(tokens: number): void;
  /** The generation ended (finished, failed or cancelled): idempotent. */
  release(): void;
}

interface Entry {
  perToken: number;
  sliding: KvSliding | null;
  /** Worst-case tokens: prompt + max_tokens, bounded by the context. */
  total: number;
  /** Tokens in its KV now. */
  tokens: number;
  /** Tokens in its KV when the latest completed memory sample started. */
  seen: number;
}

export class KvReservations {
  private readonly live = new Set<Entry>();

  /** Generations holding a reservation. */
  get count(): number {
    return this.live.size;
  }

  /**
   * Reserves the worst-case KV of a generation that starts now: `promptTokens + maxTokens` tokens,
   * at most `contextLength` (when given).
   */
  reserve(model: Pick<ModelInfo, 'kvBytesPerToken' | 'kvSliding'>, promptTokens: number, maxTokens: number, contextLength?: number): KvReservation {
    const want = Math.max(0, promptTokens) + Math.max(0, maxTokens);
    const total = contextLength && contextLength > 0 ? Math.min(want, contextLength) : want;
    const e: Entry = { perToken: Math.max(0, model.kvBytesPerToken || 0), sliding: model.kvSliding ?? null, total, tokens: 0, seen: 0 };
    this.live.add(e);
    return {
      progress: (tokens) => {
        if (Number.isFinite(tokens)) e.tokens = Math.max(e.tokens, Math.min(e.total, tokens));
      },
      release: () => {
        this.live.delete(e);
      },
    };
  }

  /** KV bytes the running generations may still add beyond what the latest memory sample saw. */
  reservedBytes(): number {
    let sum = 0;
    for (const e of this.live) sum += Math.max(0, kvBytesFor(e.perToken, e.sliding, e.total) - kvBytesFor(e.perToken, e.sliding, e.seen));
    return sum;
  }

  /**
   * A memory sample starts: what each generation holds now will be in its RSS. Returns the
   * function to call once the sample is in (only then does admission read it).
   */
  sampleStarted(): () => void {
    const at = [...this.live].map((e) => [e, e.tokens] as const);
    return () => {
      for (const [e, tokens] of at) e.seen = Math.max(e.seen, tokens);
    };
  }
}
