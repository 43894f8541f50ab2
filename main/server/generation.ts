// Runs one generation and writes the response, streamed (SSE) or not, for every generating API:
// the life cycle (response cache, admission, queue slot, engine, cancellation, caching) is here once,
// and each API plugs in a ResponseFormat (its wire format and error shape; OpenAI's is
// openai-writer.ts, Anthropic's anthropic/route.ts). Everything that can be decided before the first
// byte (validation, context length, queue, admission) is a plain HTTP error; after the stream began,
// failures are the API's in-stream error event. A client disconnect aborts the engine
// (which stops within one step) and the slot is released only when the engine confirms the end,
// so the next request never overlaps a dying one. Only finished generations reach the cache.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import { ApiError, toApiError } from '../common/errors.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import type { EngineClient, EngineEvent, GenerationConstraint, SamplingParams } from '../engine/types.ts';
import type { CachedGeneration, GenerationReservation, ResponseCacheKey, ServerHooks, ServerTextPipeline } from './hooks.ts';
import { SseWriter, type SseOptions } from './sse.ts';
import type { WorkSlots } from './slots.ts';
import type { RequestTrack } from './track.ts';
import { requestAbort, SHUTDOWN_REASON } from './request-abort.ts';
import { OutputSplitter, type OutputEvent } from './output-split.ts';

export interface PreparedGeneration {
  route: 'chat' | 'completions';
  id: string;
  created: number;
  modelId: string;
  systemFingerprint: string;
  promptIds: number[];
  sampling: SamplingParams;
  stream: boolean;
  includeUsage: boolean;
  /** Parse tool calls out of the output (tools were offered). */
  toolsActive: boolean;
  /** Constrained decoding (response_format json_*, forced tool call); null = free text. */
  constraint?: GenerationConstraint | null;
  /** Deterministic requests may use the response cache. */
  cacheKey: ResponseCacheKey | null;
  /** Log-probabilities requested: alternatives per token (0..20); null/absent = off. */
  logprobs?: number | null;
  /** Split a leading `<think>` block out as reasoning (output-split.ts). */
  reasoning?: boolean;
  /** The rendered prompt ends inside an open `<think>` block. */
  startInThinking?: boolean;
  /** The API's wire format and error shape. */
  format: ResponseFormat;
}

export type DoneEvent = Extract<EngineEvent, { type: 'done' }>;
export type DeltaEvent = Extract<EngineEvent, { type: 'delta' }>;
/** A delta relayed from a remote upstream: already split into output events there. */
export type RelayedDelta = DeltaEvent & { events: OutputEvent[] };

/**
 * Where a writer's output events come from. Local generations: the one splitter (reasoning, then
 * tool calls) over the engine's text. Remote ones: the events the upstream already split
 * (`reasoning_content`, `tool_calls`). Writers never split text themselves, so every API reports
 * both kinds of generation alike.
 */
export interface OutputSource {
  /** Events of one delta (streaming). */
  push(ev: DeltaEvent): OutputEvent[];
  /** End of the stream: whatever the splitter still held. */
  flush(): OutputEvent[];
  /** Non-stream: every output event of the whole generation (`text` = all deltas' text). */
  all(text: string): OutputEvent[];
}

export interface OutputSourceOptions {
  /** Split a leading think block out as reasoning (default: the request's `prep.reasoning`). */
  reasoning?: boolean;
}

function localOutput(prep: PreparedGeneration, text: ServerTextPipeline, opts: OutputSourceOptions): OutputSource {
  const splitOpts = () => ({
    reasoning: opts.reasoning ?? (prep.route === 'chat' && prep.reasoning === true),
    startInThinking: prep.startInThinking === true,
    toolParser: prep.toolsActive ? text.createToolCallParser() : null,
  });
  const stream = new OutputSplitter(splitOpts());
  return {
    push: (ev) => stream.push(ev.text),
    flush: () => stream.flush(),
    all: (whole) => {
      const sp = new OutputSplitter(splitOpts());
      return [...sp.push(whole), ...sp.flush()];
    },
  };
}

function relayedOutput(seen: OutputEvent[], opts: OutputSourceOptions, prep: PreparedGeneration): OutputSource {
  // A writer that keeps reasoning inside the answer (reasoning_format "none") gets it as the
  // upstream model wrote it: a think block at the start of the content.
  const keepInline = (opts.reasoning ?? prep.reasoning === true) === false;
  let open = false;
  const inline = (evs: OutputEvent[]): OutputEvent[] => {
    if (!keepInline) return evs;
    const out: OutputEvent[] = [];
    for (const e of evs) {
      if (e.type === 'reasoning') {
        out.push({ type: 'content', text: `${open ? '' : '<think>'}${e.text}` });
        open = true;
      } else {
        if (open && e.type === 'content') {
          out.push({ type: 'content', text: `</think>${e.text}` });
          open = false;
          continue;
        }
        out.push(e);
      }
    }
    return out;
  };
  return {
    push: (ev) => inline((ev as Partial<RelayedDelta>).events ?? []),
    flush: () => (open ? ((open = false), [{ type: 'content', text: '</think>' }]) : []),
    all: () => {
      open = false;
      const out = inline(seen);
      if (open) out.push({ type: 'content', text: '</think>' });
      open = false;
      return out;
    },
  };
}

/** What a writer may use to answer one request. */
export interface WriterContext {
  prep: PreparedGeneration;
  /** null for non-stream requests. */
  sse: SseWriter | null;
  text: ServerTextPipeline;
  track: RequestTrack;
  /** Non-stream: writes the 200 JSON body (once). */
  writeJson(body: unknown): void;
  /** The request's output events (create one per writer; see OutputSource). */
  output(opts?: OutputSourceOptions): OutputSource;
}

/** Writes one generation's output in an API's format; created per request. */
export interface ResponseWriter {
  prefill?(ev: Extract<EngineEvent, { type: 'prefill' }>): Promise<void>;
  /** Called only while the client is still there. */
  delta(ev: Extract<EngineEvent, { type: 'delta' }>): Promise<void>;
  /** A finished (not cancelled) generation; `text` is the whole output. Must end the response. */
  done(ev: DoneEvent, text: string): Promise<void>;
}

/** One API's wire format: the life cycle calls it, never the other way round. */
export interface ResponseFormat {
  /** Prefix of the response id (default chatcmpl-/cmpl-; Anthropic msg_). */
  idPrefix?: string;
  /** SSE framing (named events, keep-alive frame, final frame); default OpenAI's. */
  sse?: SseOptions;
  /** The JSON error body in this API's shape (the HTTP status is the error's). */
  errorBody(err: ApiError, requestId: string): unknown;
  /** An error after the stream began: this API's error event, then the end of the stream. */
  streamError(sse: SseWriter, err: ApiError, requestId: string): Promise<void>;
  writer(ctx: WriterContext): ResponseWriter;
}

export interface GenerationEnv {
  /** The lease's executor (the local engine, or e.g. an upstream server). */
  engine: Pick<EngineClient, 'generate'>;
  text: ServerTextPipeline;
  hooks: ServerHooks;
  slots: WorkSlots;
  keepAliveIntervalMs: number;
  retryAfterSeconds: number;
  /** Aborted when the server shuts down. */
  shutdownSignal: AbortSignal;
}

// Re-exported: embeddings and tests import it from here.
export { SHUTDOWN_REASON };

export function randomId(prefix: string): string {
  // randomUUID draws from a cached entropy pool; randomBytes(12) made a syscall per id (profiled:
  // ~4% of a response-cache hit). 24 hex chars of a v4 UUID = 90 random bits.
  return `${prefix}${randomUUID().replace(/-/g, '').slice(0, 24)}`;
}

export function engineEventError(ev: Extract<EngineEvent, { type: 'error' }>, retryAfter: number): ApiError {
  switch (ev.code) {
    case 'engine_unavailable':
      return new ApiError('engine_unavailable', ev.message || 'The engine is not available; retry shortly', { retryAfter });
    case 'engine_crashed':
      return new ApiError('engine_crashed', 'The engine stopped unexpectedly and is restarting; retry the request', { retryAfter });
    case 'context_length_exceeded':
      return new ApiError('context_length_exceeded', ev.message, { param: 'messages' });
    case 'invalid_request':
      return new ApiError('invalid_request', ev.message);
    case 'model_load_failed':
      return new ApiError('model_load_failed', ev.message);
    default:
      return new ApiError('internal_error', 'Internal error while generating');
  }
}

/** The events of a cached generation, replayed through the same writer as a live one. */
async function* replay(hit: CachedGeneration): AsyncIterable<EngineEvent> {
  // A remote answer carries the upstream's own split (there is no local parser to redo it).
  const delta: DeltaEvent | RelayedDelta = { type: 'delta', requestId: 'cache', text: hit.text, tokens: hit.completionTokens, ...(hit.events ? { events: hit.events } : {}) };
  yield delta;
  yield {
    type: 'done',
    requestId: 'cache',
    finishReason: hit.finishReason,
    stopReason: hit.stopReason,
    promptTokens: hit.promptTokens,
    // The whole prompt was served from cache: nothing was recomputed.
    cachedTokens: hit.promptTokens,
    completionTokens: hit.completionTokens,
    ttftMs: 0,
    prefillMs: 0,
    decodeMs: 0,
  };
}

/** The response cache's answer for `key` (null: miss, no cache, or an unusable entry). */
export async function cacheGet(hooks: ServerHooks, key: ResponseCacheKey | null): Promise<CachedGeneration | null> {
  if (!key || !hooks.responseCache) return null;
  try {
    const hit = await hooks.responseCache.get(key);
    if (hit && typeof hit.text === 'string' && (hit.finishReason === 'stop' || hit.finishReason === 'length')) return hit;
  } catch {
    // a broken cache is a miss; the cache itself counts and reports its failures
  }
  return null;
}

function cacheSet(hooks: ServerHooks, key: ResponseCacheKey | null, text: string, done: Extract<EngineEvent, { type: 'done' }>, events?: OutputEvent[]) {
  if (!key || !hooks.responseCache) return;
  if (done.finishReason !== 'stop' && done.finishReason !== 'length') return;
  if (done.stopReason === 'cancelled') return;
  try {
    const p = hooks.responseCache.set(key, {
      text,
      finishReason: done.finishReason,
      stopReason: done.stopReason,
      promptTokens: done.promptTokens,
      completionTokens: done.completionTokens,
      ...(events ? { events } : {}),
    });
    if (p && typeof (p as Promise<void>).catch === 'function') (p as Promise<void>).catch(() => {});
  } catch {
    // ignored: see cacheGet
  }
}

/** Sends an error as JSON on a raw response that fastify no longer manages (hijacked). */
export function writeRawError(res: ServerResponse, headers: Record<string, string>, err: ApiError, body: unknown = err.toJSON()): void {
  if (res.headersSent || res.destroyed || res.writableEnded) return;
  const h: Record<string, string> = { ...headers, 'content-type': 'application/json; charset=utf-8' };
  if (err.retryAfter !== undefined) {
    h['retry-after'] = String(err.retryAfter);
    h['retry-after-ms'] = String(err.retryAfter * 1000);
  }
  res.writeHead(err.status, h);
  res.end(JSON.stringify(body));
}

/**
 * Runs the generation and writes the whole response. Never throws: every failure is written to the
 * client (or dropped when the client is gone) and noted on `track`.
 */
export async function runGeneration(
  env: GenerationEnv,
  prep: PreparedGeneration,
  reply: FastifyReply,
  track: RequestTrack,
  /**
   * A remote model's events instead of the local engine's (no admission or local slot: the upstream
   * has its own queue). Its finished answers are stored in the response cache under `prep.cacheKey`.
   */
  relay?: (signal: AbortSignal) => AsyncIterable<EngineEvent>,
  /** A response-cache hit the caller already looked up (a remote model checks before contacting its upstream). */
  cached?: CachedGeneration | null,
): Promise<void> {
  const res = reply.raw;
  const headers = Object.fromEntries(
    Object.entries(reply.getHeaders()).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)]),
  );
  // From here on the response is written by hand (SSE needs the raw socket; one code path for both).
  reply.hijack();
  const abort = requestAbort(res, track, env.shutdownSignal);

  const sse = prep.stream ? new SseWriter(res, headers, prep.format.sse) : null;
  const fail = async (err: ApiError) => {
    track.errorCode = err.code;
    if (sse && sse.isStarted) {
      await prep.format.streamError(sse, err, track.id);
    } else {
      writeRawError(res, headers, err, prep.format.errorBody(err, track.id));
    }
  };

  let release: (() => void) | null = null;
  let reservation: GenerationReservation | null = null;
  try {
    let events: AsyncIterable<EngineEvent>;
    const hit = cached !== undefined ? cached : relay ? null : await cacheGet(env.hooks, prep.cacheKey);
    if (hit) {
      track.responseCacheHit = true;
      headers['x-mlxbar-cache'] = 'hit';
      events = replay(hit);
    } else if (relay) {
      sse?.startKeepAlive(env.keepAliveIntervalMs);
      events = relay(abort.signal);
    } else {
      const admissionInfo = () => ({ route: prep.route, promptTokens: prep.promptIds.length, maxTokens: prep.sampling.maxTokens, ...env.slots.load });
      const refusal = env.hooks.admission?.(admissionInfo());
      if (refusal) return await fail(refusal);
      const slot = env.slots.acquire(abort.signal);
      // Keep-alives while queued and during prefill keep idle-timeouts of clients and proxies quiet.
      sse?.startKeepAlive(env.keepAliveIntervalMs);
      try {
        release = await slot;
      } catch (err) {
        if (abort.signal.aborted) return await finishAborted();
        return await fail(toApiError(err));
      }
      // It starts now: memory is held for its worst case until the engine confirms its end.
      const held = env.hooks.reserve?.(admissionInfo());
      if (held instanceof ApiError) return await fail(held);
      reservation = held ?? null;
      events = env.engine.generate(
        {
          requestId: track.id,
          promptIds: prep.promptIds,
          sampling: prep.sampling,
          ...(prep.constraint ? { constraint: prep.constraint } : {}),
          ...(typeof prep.logprobs === 'number' ? { logprobs: prep.logprobs } : {}),
        },
        abort.signal,
      );
    }
    await consume(events);
  } catch (err) {
    const apiErr = toApiError(err);
    if (apiErr.code === 'internal_error') console.error(`[server] request ${track.id} failed: ${sanitizeMessage(err)}`);
    if (!abort.signal.aborted) await fail(apiErr);
    else await finishAborted();
  } finally {
    reservation?.release();
    release?.();
    sse?.stopKeepAlive();
    abort.dispose();
    if (!res.writableEnded && !res.headersSent) {
      const err = new ApiError('internal_error', 'Internal error');
      writeRawError(res, headers, err, prep.format.errorBody(err, track.id));
    }
    if (!res.writableEnded) res.end();
  }

  async function finishAborted(): Promise<void> {
    if (abort.signal.reason === SHUTDOWN_REASON) {
      track.cancelled = true;
      await fail(new ApiError('engine_unavailable', 'The server is shutting down', { retryAfter: env.retryAfterSeconds }));
    }
    // client gone: nothing to write
  }


  /** The one event loop: bookkeeping, cancellation and caching here; the wire format in the writer. */
  async function consume(events: AsyncIterable<EngineEvent>): Promise<void> {
    const relayed: OutputEvent[] = [];
    // Events split upstream: a live remote answer, or a cached one (which carries its events).
    const presplit = !!relay || !!cached?.events;
    const output = (opts: OutputSourceOptions = {}) => (presplit ? relayedOutput(relayed, opts, prep) : localOutput(prep, env.text, opts));
    const writer = prep.format.writer({ prep, sse, text: env.text, track, writeJson, output });
    let text = '';
    // Tokens in the generation's KV (what its memory reservation has grown into).
    let kvTokens = 0;
    for await (const ev of events) {
      if (ev.type === 'prefill') {
        kvTokens = ev.cachedTokens + ev.processed;
        reservation?.progress(kvTokens);
        await writer.prefill?.(ev);
        continue;
      }
      if (ev.type === 'delta') {
        if (track.firstTokenAt === null) track.firstTokenAt = performance.now();
        kvTokens = Math.max(kvTokens, prep.promptIds.length) + ev.tokens;
        reservation?.progress(kvTokens);
        text += ev.text;
        if (presplit) relayed.push(...((ev as Partial<RelayedDelta>).events ?? []));
        if (!abort.signal.aborted) await writer.delta(ev);
        continue;
      }
      if (ev.type === 'error') {
        if (abort.signal.aborted) return finishAborted();
        return fail(engineEventError(ev, env.retryAfterSeconds));
      }
      // done
      track.promptTokens = ev.promptTokens;
      track.completionTokens = ev.completionTokens;
      track.cachedTokens = ev.cachedTokens;
      if (ev.draftTokens !== undefined) {
        track.draftTokens = ev.draftTokens;
        track.acceptedDrafts = ev.acceptedDrafts ?? 0;
      }
      if (ev.finishReason === 'cancelled' || abort.signal.aborted) {
        track.cancelled = true;
        track.finishReason = 'cancelled';
        return finishAborted();
      }
      if (!track.responseCacheHit) cacheSet(env.hooks, prep.cacheKey, text, ev, presplit ? relayed : undefined);
      await writer.done(ev, text);
      return;
    }
    // The stream ended without a done event: the engine went away.
    if (abort.signal.aborted) return finishAborted();
    return fail(new ApiError('engine_crashed', 'The engine stopped unexpectedly; retry the request', { retryAfter: env.retryAfterSeconds }));
  }

  function writeJson(body: unknown): void {
    if (res.destroyed || res.writableEnded) return;
    const payload = JSON.stringify(body);
    res.writeHead(200, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(payload)) });
    res.end(payload);
  }
}
