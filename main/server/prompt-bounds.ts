// Cheap bounds checked BEFORE the prompt is rendered and tokenized. Rendering a chat template and
// tokenizing run on the server's event loop: a 7.8 MB message, 100,000 messages or 128 tools × 600
// properties (all under the body limit) used to freeze /health and every running stream for
// seconds before the context-length check refused them. These checks are linear in the request's
// size with tiny constants (string lengths, counts) and refuse what cannot possibly fit:
//  - every message renders to at least one token, so more messages than context tokens cannot fit;
//  - no token of a real vocabulary covers more than MAX_CHARS_PER_TOKEN characters (the longest are
//    runs of spaces of a few dozen characters), so more characters than context × that cannot fit.
// Anything that passes still goes through the exact token count afterwards.
import { ApiError } from '../common/errors.ts';
import type { ChatRequest, CompletionRequest } from './validate.ts';

/** Generous upper bound of the characters one token can cover (real vocabularies: ≤ ~30). */
export const MAX_CHARS_PER_TOKEN = 64;

/** Characters in the strings of `v` (keys included), counted iteratively, stopping past `limit`. */
export function textSize(v: unknown, limit: number): number {
  let total = 0;
  const stack: unknown[] = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    if (typeof x === 'string') total += x.length;
    else if (typeof x === 'number' || typeof x === 'boolean') total += 1;
    else if (Array.isArray(x)) for (const y of x) stack.push(y);
    else if (x && typeof x === 'object') {
      for (const [k, y] of Object.entries(x)) {
        total += k.length;
        stack.push(y);
      }
    }
    if (total > limit) return total;
  }
  return total;
}

function tooLong(ctx: number, what: string, param: string): ApiError {
  return new ApiError('context_length_exceeded', `This model's maximum context length is ${ctx} tokens, but ${what}, which cannot fit; shorten it`, { param });
}

/** Throws context_length_exceeded when the request cannot fit `ctx` tokens, without tokenizing it. */
export function checkPromptBounds(r: ChatRequest | CompletionRequest, ctx: number): void {
  if (!(ctx > 0)) return;
  const maxChars = ctx * MAX_CHARS_PER_TOKEN;
  if (r.kind === 'chat') {
    if (r.messages.length > ctx) throw tooLong(ctx, `the request has ${r.messages.length} messages (each takes at least one token)`, 'messages');
    const size = textSize(r.messages, maxChars) + (r.tools ? textSize(r.tools, maxChars) : 0);
    if (size > maxChars) throw tooLong(ctx, `the messages and tools hold more than ${maxChars} characters`, r.tools && textSize(r.messages, maxChars) <= maxChars ? 'tools' : 'messages');
    return;
  }
  if (typeof r.prompt === 'string' && r.prompt.length > maxChars) throw tooLong(ctx, `the prompt holds ${r.prompt.length} characters`, 'prompt');
}

/**
 * Embeddings: each text input is cut to what its tokens could at most use (`truncate`), or refused
 * when it cannot fit; and the characters of all inputs together must fit the per-request token cap.
 */
export function boundEmbeddingTexts(texts: string[], ctx: number, maxTotalTokens: number, truncate: boolean): string[] {
  const maxChars = ctx * MAX_CHARS_PER_TOKEN;
  const out = texts.map((s, i) => {
    if (s.length <= maxChars) return s;
    // Cutting the text at maxChars keeps at least ctx tokens: truncation to ctx tokens is unchanged.
    if (truncate) return s.slice(0, maxChars);
    throw new ApiError('context_length_exceeded', `This model's maximum context length is ${ctx} tokens, but input[${i}] holds ${s.length} characters, which cannot fit. Shorten it (or send "truncate": true to cut it).`, { param: 'input' });
  });
  const total = out.reduce((a, s) => a + s.length, 0);
  const maxTotalChars = maxTotalTokens * MAX_CHARS_PER_TOKEN;
  if (total > maxTotalChars) {
    throw new ApiError('invalid_value', `The inputs hold ${total} characters, more than ${maxTotalTokens} tokens can cover; at most ${maxTotalTokens} tokens are allowed per request`, { param: 'input' });
  }
  return out;
}
