// Runs one generation for /v1/chat/completions or /v1/completions and writes the OpenAI response,
// streamed (SSE) or not. Everything that can be decided before the first byte (validation,
// context length, queue, admission) is a plain HTTP error; after the stream began, failures are a
// `data: {"error":…}` event followed by `data: [DONE]`. A client disconnect aborts the engine
// (which stops within one step) and the slot is released only when the engine confirms the end,
// so the next request never overlaps a dying one. Only finished generations reach the cache.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import { ApiError, toApiError } from '../common/errors.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import type { EngineClient, EngineEvent, GenerationConstraint, SamplingParams, TokenLogprob } from '../engine/types.ts';
import type { ToolCall, ToolParserEvent } from '../engine/text/types.ts';
import type { CachedGeneration, ResponseCacheKey, ServerHooks, ServerTextPipeline } from './hooks.ts';
import { SseWriter } from './sse.ts';
import type { WorkSlots } from './slots.ts';
import type { RequestTrack } from './track.ts';
import { requestAbort, SHUTDOWN_REASON } from './request-abort.ts';

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
}

/** OpenAI chat `logprobs.content` entries. */
function chatLogprobs(lps: TokenLogprob[]): { content: unknown[]; refusal: null } {
  return {
    content: lps.map((t) => ({
      token: t.token,
      logprob: t.logprob,
      bytes: t.bytes,
      top_logprobs: t.top.map((a) => ({ token: a.token, logprob: a.logprob, bytes: a.bytes })),
    })),
    refusal: null,
  };
}

/**
 * Legacy completions `logprobs`. `text_offset` counts UTF-16 units of the completion text from its
 * start (continuing across stream chunks; `offset` is where this batch begins). Alternatives with the
 * same text keep the most likely one (a JSON object cannot hold both).
 */
function completionLogprobs(lps: TokenLogprob[], offset: number) {
  const tokens: string[] = [];
  const tokenLogprobs: number[] = [];
  const top: Record<string, number>[] = [];
  const textOffset: number[] = [];
  let at = offset;
  for (const t of lps) {
    tokens.push(t.token);
    tokenLogprobs.push(t.logprob);
    const alts: Record<string, number> = {};
    for (const a of t.top) if (!Object.prototype.hasOwnProperty.call(alts, a.token)) alts[a.token] = a.logprob;
    top.push(alts);
    textOffset.push(at);
    at += t.token.length;
  }
  return { tokens, token_logprobs: tokenLogprobs, top_logprobs: top, text_offset: textOffset };
}

export interface GenerationEnv {
  engine: EngineClient;
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

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

function usageOf(done: Extract<EngineEvent, { type: 'done' }>): Usage {
  return {
    prompt_tokens: done.promptTokens,
    completion_tokens: done.completionTokens,
    total_tokens: done.promptTokens + done.completionTokens,
    prompt_tokens_details: { cached_tokens: done.cachedTokens },
  };
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
  yield { type: 'delta', requestId: 'cache', text: hit.text, tokens: hit.completionTokens };
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

async function cacheGet(hooks: ServerHooks, key: ResponseCacheKey | null): Promise<CachedGeneration | null> {
  if (!key || !hooks.responseCache) return null;
  try {
    const hit = await hooks.responseCache.get(key);
    if (hit && typeof hit.text === 'string' && (hit.finishReason === 'stop' || hit.finishReason === 'length')) return hit;
  } catch {
    // a broken cache is a miss; the cache itself counts and reports its failures
  }
  return null;
}

function cacheSet(hooks: ServerHooks, key: ResponseCacheKey | null, text: string, done: Extract<EngineEvent, { type: 'done' }>) {
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
    });
    if (p && typeof (p as Promise<void>).catch === 'function') (p as Promise<void>).catch(() => {});
  } catch {
    // ignored: see cacheGet
  }
}

function finishReasonFor(done: Extract<EngineEvent, { type: 'done' }>, sawToolCall: boolean): 'stop' | 'length' | 'tool_calls' {
  if (done.finishReason === 'length') return 'length';
  return sawToolCall ? 'tool_calls' : 'stop';
}

/** Sends an error as JSON on a raw response that fastify no longer manages (hijacked). */
export function writeRawError(res: ServerResponse, headers: Record<string, string>, err: ApiError): void {
  if (res.headersSent || res.destroyed || res.writableEnded) return;
  const h: Record<string, string> = { ...headers, 'content-type': 'application/json; charset=utf-8' };
  if (err.retryAfter !== undefined) {
    h['retry-after'] = String(err.retryAfter);
    h['retry-after-ms'] = String(err.retryAfter * 1000);
  }
  res.writeHead(err.status, h);
  res.end(JSON.stringify(err.toJSON()));
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
): Promise<void> {
  const res = reply.raw;
  const headers = Object.fromEntries(
    Object.entries(reply.getHeaders()).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)]),
  );
  // From here on the response is written by hand (SSE needs the raw socket; one code path for both).
  reply.hijack();
  const abort = requestAbort(res, track, env.shutdownSignal);

  const sse = prep.stream ? new SseWriter(res, headers) : null;
  const fail = async (err: ApiError) => {
    track.errorCode = err.code;
    if (sse && sse.isStarted) {
      await sse.send(err.toJSON());
      await sse.done();
    } else {
      writeRawError(res, headers, err);
    }
  };

  let release: (() => void) | null = null;
  try {
    let events: AsyncIterable<EngineEvent>;
    const hit = await cacheGet(env.hooks, prep.cacheKey);
    if (hit) {
      track.responseCacheHit = true;
      headers['x-mlxbar-cache'] = 'hit';
      events = replay(hit);
    } else {
      const refusal = env.hooks.admission?.({
        route: prep.route,
        promptTokens: prep.promptIds.length,
        maxTokens: prep.sampling.maxTokens,
        ...env.slots.load,
      });
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
    release?.();
    sse?.stopKeepAlive();
    abort.dispose();
    if (!res.writableEnded && !res.headersSent) writeRawError(res, headers, new ApiError('internal_error', 'Internal error'));
    if (!res.writableEnded) res.end();
  }

  async function finishAborted(): Promise<void> {
    if (abort.signal.reason === SHUTDOWN_REASON) {
      track.cancelled = true;
      await fail(new ApiError('engine_unavailable', 'The server is shutting down', { retryAfter: env.retryAfterSeconds }));
    }
    // client gone: nothing to write
  }

  async function consume(events: AsyncIterable<EngineEvent>): Promise<void> {
    // Tool calls are split out of the text by engine-text's streaming parser (the same one the
    // non-stream path uses via parseToolCalls, so both agree).
    const parser = prep.toolsActive ? env.text.createToolCallParser() : null;
    let text = '';
    let roleSent = false;
    let sawToolCall = false;
    // Logprobs: every token, and (streaming) the ones not yet sent. Each chunk carries the tokens
    // released since the previous one; what no content chunk took goes on the finishing chunk.
    const wantLogprobs = typeof prep.logprobs === 'number';
    const allLogprobs: TokenLogprob[] = [];
    let unsentLogprobs: TokenLogprob[] = [];
    let sentLogprobChars = 0;
    const takeLogprobs = (): unknown => {
      if (!wantLogprobs) return null;
      const lps = unsentLogprobs;
      unsentLogprobs = [];
      if (prep.route === 'chat') return chatLogprobs(lps);
      const out = completionLogprobs(lps, sentLogprobChars);
      for (const t of lps) sentLogprobChars += t.token.length;
      return out;
    };
    const chunkBase = () => ({
      id: prep.id,
      object: prep.route === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      created: prep.created,
      model: prep.modelId,
      system_fingerprint: prep.systemFingerprint,
    });
    const withUsage = (o: Record<string, unknown>) => (prep.includeUsage ? { ...o, usage: null } : o);
    const chatChunk = (delta: Record<string, unknown>, finish: string | null = null, logprobs: unknown = null) =>
      withUsage({ ...chunkBase(), choices: [{ index: 0, delta, logprobs, finish_reason: finish }] });
    const sendRole = async () => {
      if (!sse || roleSent || prep.route !== 'chat') return;
      roleSent = true;
      await sse.send(chatChunk({ role: 'assistant', content: '' }));
    };
    const sendStreamEvents = async (evs: ToolParserEvent[]) => {
      for (const ev of evs) {
        if (ev.type === 'content') {
          if (!ev.text) continue;
          if (prep.route === 'chat') await sse!.send(chatChunk({ content: ev.text }, null, takeLogprobs()));
          else await sse!.send(withUsage({ ...chunkBase(), choices: [{ index: 0, text: ev.text, logprobs: takeLogprobs(), finish_reason: null }] }));
        } else if (ev.type === 'tool_call') {
          sawToolCall = true;
          await sse!.send(chatChunk({ tool_calls: [{ index: ev.index, id: ev.id, type: 'function', function: { name: ev.name, arguments: '' } }] }));
        } else {
          await sse!.send(chatChunk({ tool_calls: [{ index: ev.index, function: { arguments: ev.argumentsDelta } }] }));
        }
      }
    };

    for await (const ev of events) {
      if (ev.type === 'prefill') {
        await sendRole();
        continue;
      }
      if (ev.type === 'delta') {
        if (track.firstTokenAt === null) track.firstTokenAt = performance.now();
        text += ev.text;
        if (wantLogprobs && ev.logprobs) {
          allLogprobs.push(...ev.logprobs);
          unsentLogprobs.push(...ev.logprobs);
        }
        if (sse && !abort.signal.aborted) {
          await sendRole();
          await sendStreamEvents(parser ? parser.push(ev.text) : [{ type: 'content', text: ev.text }]);
        }
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
      if (ev.finishReason === 'cancelled' || abort.signal.aborted) {
        track.cancelled = true;
        track.finishReason = 'cancelled';
        return finishAborted();
      }
      if (!track.responseCacheHit) cacheSet(env.hooks, prep.cacheKey, text, ev);
      const usage = usageOf(ev);
      if (sse) {
        await sendRole();
        if (parser) await sendStreamEvents(parser.flush());
        const finish = finishReasonFor(ev, sawToolCall);
        track.finishReason = finish;
        if (prep.route === 'chat') {
          await sse.send(chatChunk({}, finish, unsentLogprobs.length > 0 ? takeLogprobs() : null));
        } else {
          await sse.send(withUsage({ ...chunkBase(), choices: [{ index: 0, text: '', logprobs: unsentLogprobs.length > 0 ? takeLogprobs() : null, finish_reason: finish }] }));
        }
        if (prep.includeUsage) await sse.send({ ...chunkBase(), choices: [], usage });
        await sse.done();
        return;
      }
      writeJson(buildFinal(text, ev, usage, wantLogprobs ? allLogprobs : null));
      return;
    }
    // The stream ended without a done event: the engine went away.
    if (abort.signal.aborted) return finishAborted();
    return fail(new ApiError('engine_crashed', 'The engine stopped unexpectedly; retry the request', { retryAfter: env.retryAfterSeconds }));
  }

  function buildFinal(text: string, done: Extract<EngineEvent, { type: 'done' }>, usage: Usage, lps: TokenLogprob[] | null): unknown {
    const base = { id: prep.id, created: prep.created, model: prep.modelId, system_fingerprint: prep.systemFingerprint };
    if (prep.route === 'completions') {
      track.finishReason = done.finishReason;
      const logprobs = lps ? completionLogprobs(lps, 0) : null;
      return { ...base, object: 'text_completion', choices: [{ index: 0, text, logprobs, finish_reason: done.finishReason }], usage };
    }
    let content: string | null = text;
    let toolCalls: ToolCall[] = [];
    if (prep.toolsActive) {
      try {
        const parsed = env.text.parseToolCalls(text);
        toolCalls = parsed.toolCalls;
        if (toolCalls.length > 0) content = parsed.content;
      } catch {
        toolCalls = [];
      }
    }
    const finish = finishReasonFor(done, toolCalls.length > 0);
    track.finishReason = finish;
    const message: Record<string, unknown> = { role: 'assistant', content };
    if (toolCalls.length > 0) {
      message.tool_calls = toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.function.name, arguments: c.function.arguments } }));
    }
    // With tool calls, `content` covers every generated token (the call's markup included).
    const logprobs = lps ? chatLogprobs(lps) : null;
    return { ...base, object: 'chat.completion', choices: [{ index: 0, message, logprobs, finish_reason: finish }], usage };
  }

  function writeJson(body: unknown): void {
    if (res.destroyed || res.writableEnded) return;
    const payload = JSON.stringify(body);
    res.writeHead(200, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(payload)) });
    res.end(payload);
  }
}
