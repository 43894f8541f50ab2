// Stored responses for `GET /v1/responses/{id}` and `previous_response_id`: in memory only, bounded
// by count and bytes (least recently used go first) and by age (an entry expires `ttlMs` after it
// was last used). Nothing is written to disk: a restart forgets them, and a `previous_response_id`
// that is gone is a clear 400 — never a silent fresh start.
import { LRUCache } from 'lru-cache';
import type { ChatMessage } from '../hooks.ts';

export interface StoredResponse {
  /** The final Response object as returned to the client. */
  response: Record<string, unknown>;
  /** The conversation after this response (its input, history and output; never its instructions). */
  messages: ChatMessage[];
}

export interface ResponseStoreLimits {
  maxEntries: number;
  maxBytes: number;
  ttlMs: number;
}

export const DEFAULT_RESPONSE_STORE_LIMITS: ResponseStoreLimits = {
  maxEntries: 256,
  maxBytes: 64 * 1024 * 1024,
  ttlMs: 60 * 60 * 1000,
};

export class ResponseStore {
  private readonly lru: LRUCache<string, StoredResponse>;

  constructor(readonly limits: ResponseStoreLimits = DEFAULT_RESPONSE_STORE_LIMITS) {
    this.lru = new LRUCache<string, StoredResponse>({
      max: limits.maxEntries,
      maxSize: limits.maxBytes,
      // UTF-16 length ×2 is an upper bound of the strings' memory; good enough for a budget.
      sizeCalculation: (v) => Math.max(1, 2 * (JSON.stringify(v.response).length + JSON.stringify(v.messages).length)),
      ttl: limits.ttlMs,
      updateAgeOnGet: true,
    });
  }

  /** An entry larger than the whole budget is not kept (lru-cache refuses it). */
  set(id: string, entry: StoredResponse): void {
    this.lru.set(id, entry);
  }

  get(id: string): StoredResponse | undefined {
    return this.lru.get(id);
  }

  delete(id: string): boolean {
    return this.lru.delete(id);
  }

  get size(): number {
    return this.lru.size;
  }
}

/** The conversation a stored response continues: history + input + the response's output as messages. */
export function conversationAfter(history: ChatMessage[], response: Record<string, unknown>): ChatMessage[] {
  const out = [...history];
  let turn: ChatMessage | null = null;
  let reasoning: string | null = null;
  for (const item of (response.output as Record<string, unknown>[]) ?? []) {
    if (item.type === 'reasoning') {
      reasoning = ((item.content as { text?: string }[]) ?? []).map((c) => c.text ?? '').join('');
      continue;
    }
    if (!turn) {
      turn = { role: 'assistant', content: null };
      if (reasoning) turn.reasoning_content = reasoning;
      out.push(turn);
    }
    if (item.type === 'message') {
      const text = ((item.content as { type: string; text?: string }[]) ?? []).map((c) => c.text ?? '').join('');
      turn.content = `${turn.content ?? ''}${text}`;
    } else if (item.type === 'function_call') {
      (turn.tool_calls ??= []).push({
        id: item.call_id as string,
        type: 'function',
        function: { name: item.name as string, arguments: item.arguments as string },
      });
    }
  }
  return out;
}
