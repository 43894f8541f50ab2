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
import { requestAbort, SHUTDOWN_REASON, type RequestAbort } from './request-abort.ts';
import type { OutputEvent } from './output-split.ts';
import { localOutput, relayedOutput, type OutputSource, type OutputSourceOptions, type RelayedDelta } from './output-source.ts';

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
export type { OutputSource, OutputSourceOptions, RelayedDelta } from './output-source.ts';

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
  /** The local engine (a remote model's events come through `relay` instead). */
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

/** One request's response while it is written by hand (after `reply.hijack()`). */
class GenerationRun {
  /** The queue slot, once granted (released when the run ends, whatever happened). */
  release: (() => void) | null = null;
  /** The generation's worst-case memory, held from its start until the engine confirms its end. */
  reservation: GenerationReservation | null = null;
  readonly sse: SseWriter | null;

  constructor(
    readonly env: GenerationEnv,
    readonly prep: PreparedGeneration,
    readonly res: ServerResponse,
    readonly headers: Record<string, string>,
    readonly track: RequestTrack,
    readonly abort: RequestAbort,
  ) {
    this.sse = prep.stream ? new SseWriter(res, headers, prep.format.sse) : null;
  }

  /** An error in the API's shape: its in-stream event once the stream began, else an HTTP error. */
  async fail(err: ApiError): Promise<void> {
    this.track.errorCode = err.code;
    if (this.sse && this.sse.isStarted) {
      await this.prep.format.streamError(this.sse, err, this.track.id);
    } else {
      writeRawError(this.res, this.headers, err, this.prep.format.errorBody(err, this.track.id));
    }
  }

  /** Aborted: a shutdown tells the client to retry; a client that left gets nothing. */
  async finishAborted(): Promise<void> {
    if (this.abort.signal.reason === SHUTDOWN_REASON) {
      this.track.cancelled = true;
      await this.fail(new ApiError('engine_unavailable', 'The server is shutting down', { retryAfter: this.env.retryAfterSeconds }));
    }
    // client gone: nothing to write
  }

  /** Non-stream: the 200 JSON body (once). */
  writeJson(body: unknown): void {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return;
    const payload = JSON.stringify(body);
    res.writeHead(200, { ...this.headers, 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(payload)) });
    res.end(payload);
  }

  /** Whatever happened: the slot back, no keep-alives, and a response that ends. */
  close(): void {
    this.reservation?.release();
    this.release?.();
    this.sse?.stopKeepAlive();
    this.abort.dispose();
    if (!this.res.writableEnded && !this.res.headersSent) {
      const err = new ApiError('internal_error', 'Internal error');
      writeRawError(this.res, this.headers, err, this.prep.format.errorBody(err, this.track.id));
    }
    if (!this.res.writableEnded) this.res.end();
  }
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
  const run = new GenerationRun(env, prep, res, headers, track, requestAbort(res, track, env.shutdownSignal));
  try {
    const events = await openEvents(run, relay, cached);
    // Events split upstream: a live remote answer, or a cached one (which carries its events).
    if (events) await consume(run, events, !!relay || !!cached?.events);
  } catch (err) {
    const apiErr = toApiError(err);
    if (apiErr.code === 'internal_error') console.error(`[server] request ${track.id} failed: ${sanitizeMessage(err)}`);
    if (!run.abort.signal.aborted) await run.fail(apiErr);
    else await run.finishAborted();
  } finally {
    run.close();
  }
}

/**
 * Where the request's events come from: the response cache, the remote relay, or the local engine
 * after memory admission and a queue slot. Null: refused or aborted while queued (already answered).
 */
async function openEvents(run: GenerationRun, relay: ((signal: AbortSignal) => AsyncIterable<EngineEvent>) | undefined, cached: CachedGeneration | null | undefined): Promise<AsyncIterable<EngineEvent> | null> {
  const { env, prep, sse, track, abort } = run;
  const hit = cached !== undefined ? cached : relay ? null : await cacheGet(env.hooks, prep.cacheKey);
  if (hit) {
    track.responseCacheHit = true;
    run.headers['x-mlxbar-cache'] = 'hit';
    return replay(hit);
  }
  if (relay) {
    sse?.startKeepAlive(env.keepAliveIntervalMs);
    return relay(abort.signal);
  }
  const admissionInfo = () => ({ route: prep.route, promptTokens: prep.promptIds.length, maxTokens: prep.sampling.maxTokens, ...env.slots.load });
  const refusal = env.hooks.admission?.(admissionInfo());
  if (refusal) {
    await run.fail(refusal);
    return null;
  }
  const slot = env.slots.acquire(abort.signal);
  // Keep-alives while queued and during prefill keep idle-timeouts of clients and proxies quiet.
  sse?.startKeepAlive(env.keepAliveIntervalMs);
  try {
    run.release = await slot;
  } catch (err) {
    if (abort.signal.aborted) await run.finishAborted();
    else await run.fail(toApiError(err));
    return null;
  }
  // It starts now: memory is held for its worst case until the engine confirms its end.
  const held = env.hooks.reserve?.(admissionInfo());
  if (held instanceof ApiError) {
    await run.fail(held);
    return null;
  }
  run.reservation = held ?? null;
  return env.engine.generate(
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

/** The one event loop: bookkeeping, cancellation and caching here; the wire format in the writer. */
async function consume(run: GenerationRun, events: AsyncIterable<EngineEvent>, presplit: boolean): Promise<void> {
  const { env, prep, sse, track, abort } = run;
  const relayed: OutputEvent[] = [];
  const output = (opts: OutputSourceOptions = {}) => (presplit ? relayedOutput(relayed, opts, prep) : localOutput(prep, env.text, opts));
  const writer = prep.format.writer({ prep, sse, text: env.text, track, writeJson: (body) => run.writeJson(body), output });
  let text = '';
  // Tokens in the generation's KV (what its memory reservation has grown into).
  let kvTokens = 0;
  for await (const ev of events) {
    if (ev.type === 'prefill') {
      kvTokens = ev.cachedTokens + ev.processed;
      run.reservation?.progress(kvTokens);
      await writer.prefill?.(ev);
      continue;
    }
    if (ev.type === 'delta') {
      if (track.firstTokenAt === null) track.firstTokenAt = performance.now();
      kvTokens = Math.max(kvTokens, prep.promptIds.length) + ev.tokens;
      run.reservation?.progress(kvTokens);
      text += ev.text;
      if (presplit) relayed.push(...((ev as Partial<RelayedDelta>).events ?? []));
      if (!abort.signal.aborted) await writer.delta(ev);
      continue;
    }
    if (ev.type === 'error') {
      if (abort.signal.aborted) return run.finishAborted();
      return run.fail(engineEventError(ev, env.retryAfterSeconds));
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
      return run.finishAborted();
    }
    if (!track.responseCacheHit) cacheSet(env.hooks, prep.cacheKey, text, ev, presplit ? relayed : undefined);
    await writer.done(ev, text);
    return;
  }
  // The stream ended without a done event: the engine went away.
  if (abort.signal.aborted) return run.finishAborted();
  return run.fail(new ApiError('engine_crashed', 'The engine stopped unexpectedly; retry the request', { retryAfter: env.retryAfterSeconds }));
}
