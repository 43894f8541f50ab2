// Forwards one internal chat request to a remote upstream and hands its answer back as our output
// events, chunk by chunk: the next upstream chunk is read only after the caller has written the
// previous one (back-pressure end to end), and the caller's AbortSignal (client gone, shutdown)
// aborts the upstream request. The upstream is always asked to stream, even for a non-stream
// client, so time to first token is measured the same way for every request and a disconnect can
// stop the upstream mid-generation.
import { ApiError } from '../../common/errors.ts';
import type { OutputEvent } from '../output-split.ts';
import type { ChatRequest } from '../validate.ts';
import { upstreamApiError } from './errors.ts';
import { toUpstreamChatBody, UpstreamStreamReader, type UpstreamSummary } from './openai-wire.ts';
import type { RemoteUpstream } from './remotes.ts';
import { sseChunks, UpstreamError } from './upstream.ts';

export interface ForwardOptions {
  upstream: RemoteUpstream;
  request: ChatRequest;
  /** Client's cap (null = the upstream's default). */
  maxTokens: number | null;
  signal: AbortSignal;
  /** Called for each upstream chunk's events, in order; awaited before the next chunk is read. */
  onEvents(events: OutputEvent[]): Promise<void> | void;
  now?: () => number;
}

export interface ForwardResult extends UpstreamSummary {
  /** ms from the request sent upstream to its first output event. */
  ttftMs: number | null;
  totalMs: number;
}

/**
 * Rejects with an ApiError: before the first chunk it is the mapped upstream error (the caller may
 * fall back to a local model); after it, the stream failed mid-way (`upstream_error`).
 */
export async function forwardChat(opts: ForwardOptions): Promise<ForwardResult> {
  const now = opts.now ?? Date.now;
  const { upstream } = opts;
  const body = toUpstreamChatBody(opts.request, { stream: true, maxTokens: opts.maxTokens });
  const call = await upstream.open('chat/completions', body, opts.signal);
  const reader = new UpstreamStreamReader();
  let firstAt: number | undefined;
  // A client that leaves while the upstream is silent (prefilling, thinking) must not wait for its next chunk.
  const onAbort = () => call.response.body.destroy();
  opts.signal.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const chunk of sseChunks(call.response.body)) {
      if (opts.signal.aborted) break;
      const events = reader.push(chunk);
      if (!events.length) continue;
      firstAt ??= now();
      await opts.onEvents(events);
    }
  } catch (err) {
    if (opts.signal.aborted) {
      call.finish({ aborted: true });
      throw new ApiError('upstream_error', 'request cancelled');
    }
    call.finish({ ok: false, error: err });
    throw err instanceof UpstreamError ? upstreamApiError(err, upstream.settings) : new ApiError('upstream_error', `The remote model "${upstream.id}" failed mid-response.`);
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
  }
  if (opts.signal.aborted) {
    call.finish({ aborted: true });
    throw new ApiError('upstream_error', 'request cancelled');
  }
  const summary = reader.summary();
  call.finish({ ok: true, completionTokens: summary.completionTokens, firstTokenAt: firstAt });
  const end = now();
  return { ...summary, ttftMs: firstAt === undefined ? null : firstAt - call.startedAt, totalMs: end - call.startedAt };
}
