// Forwards one internal chat request to a remote upstream and hands its answer back as the life
// cycle's events (deltas already split into output events, then `done`), chunk by chunk: the next
// upstream chunk is read only after the writer has written the previous one (back-pressure end to
// end), and the life cycle's AbortSignal (client gone, shutdown) aborts the upstream request. The
// upstream is always asked to stream, even for a non-stream client, so time to first token is
// measured alike for every request and a disconnect stops the upstream mid-generation.
// Two phases, so a fallback stays possible: `openRemote` (queue, breaker, connect, headers —
// nothing sent to the client yet) and `relayRemote` (the body).
import { ApiError } from '../../common/errors.ts';
import type { EngineEvent } from '../../engine/types.ts';
import type { RelayedDelta } from '../generation.ts';
import type { ChatRequest, CompletionRequest } from '../validate.ts';
import { upstreamApiError } from './errors.ts';
import { toUpstreamChatBody, toUpstreamCompletionBody, UpstreamStreamReader } from './openai-wire.ts';
import type { RemoteUpstream, UpstreamCall } from './remotes.ts';
import { sseChunks, UpstreamError } from './upstream.ts';

/** The upstream path and body of a chat or completion request (`stream` false: the response-cache key's form). */
export function upstreamRequest(request: ChatRequest | CompletionRequest, stream: boolean): { path: string; body: Record<string, unknown> } {
  const opts = { stream, maxTokens: request.maxTokens };
  return request.kind === 'chat'
    ? { path: 'chat/completions', body: toUpstreamChatBody(request, opts) }
    : { path: 'completions', body: toUpstreamCompletionBody(request, opts) };
}

/** Phase 1: rejects with a mapped ApiError (upstream_down, upstream_unavailable, a 4xx…) before any byte reached the client. */
export function openRemote(upstream: RemoteUpstream, request: ChatRequest | CompletionRequest, signal: AbortSignal): Promise<UpstreamCall> {
  const { path, body } = upstreamRequest(request, true);
  return upstream.open(path, body, signal);
}

/** Whether a phase-1 failure may be answered by a local fallback model instead (the upstream is unhealthy, not the request bad). */
export function fallbackAllowed(err: unknown): boolean {
  return err instanceof ApiError && (err.code === 'upstream_down' || err.code === 'upstream_unavailable' || err.code === 'upstream_timeout' || err.code === 'upstream_error');
}

/** Phase 2: the upstream's stream (chat or completions chunks) as life-cycle events. Throws an ApiError when it fails mid-way. */
export async function* relayRemote(
  call: UpstreamCall,
  upstream: RemoteUpstream,
  requestId: string,
  signal: AbortSignal,
  now: () => number = Date.now,
): AsyncGenerator<EngineEvent> {
  const reader = new UpstreamStreamReader();
  let firstAt: number | undefined;
  // A client that leaves while the upstream is silent (prefilling, thinking) must not wait for its next chunk.
  const onAbort = () => call.response.body.destroy();
  signal.addEventListener('abort', onAbort, { once: true });
  let read = false;
  try {
    for await (const chunk of sseChunks(call.response.body)) {
      if (signal.aborted) break;
      const events = reader.push(chunk);
      if (!events.length) continue;
      firstAt ??= now();
      const text = events.map((e) => (e.type === 'content' ? e.text : '')).join('');
      const delta: RelayedDelta = { type: 'delta', requestId, text, tokens: 1, events };
      yield delta;
    }
    read = true;
  } catch (err) {
    read = true;
    if (signal.aborted) {
      call.finish({ aborted: true });
      return yield cancelled(requestId);
    }
    call.finish({ ok: false, error: err });
    throw err instanceof UpstreamError ? upstreamApiError(err, upstream.settings) : new ApiError('upstream_error', `The remote model "${upstream.id}" failed mid-response.`);
  } finally {
    signal.removeEventListener('abort', onAbort);
    // The consumer stopped early (e.g. it failed to write): free the upstream socket.
    if (!read) call.finish({ aborted: true });
  }
  if (signal.aborted) {
    call.finish({ aborted: true });
    return yield cancelled(requestId);
  }
  const s = reader.summary();
  call.finish({ ok: true, completionTokens: s.completionTokens, firstTokenAt: firstAt });
  const end = now();
  yield {
    type: 'done',
    requestId,
    finishReason: s.finishReason === 'length' ? 'length' : 'stop',
    stopReason: s.finishReason === 'length' ? 'max_tokens' : 'eos',
    promptTokens: s.promptTokens,
    cachedTokens: s.cachedTokens,
    completionTokens: s.completionTokens,
    ttftMs: firstAt === undefined ? 0 : firstAt - call.startedAt,
    prefillMs: 0,
    decodeMs: firstAt === undefined ? 0 : end - firstAt,
  };
}

function cancelled(requestId: string): EngineEvent {
  return {
    type: 'done',
    requestId,
    finishReason: 'cancelled',
    stopReason: 'cancelled',
    promptTokens: 0,
    cachedTokens: 0,
    completionTokens: 0,
    ttftMs: 0,
    prefillMs: 0,
    decodeMs: 0,
  };
}
