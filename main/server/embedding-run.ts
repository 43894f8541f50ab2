// The embeddings life cycle, shared by POST /v1/embeddings (routes/embeddings.ts) and Ollama's
// /api/embed(dings): validation is the route's; then model (a lease that loads the model like a chat
// request would; a remote model goes to its upstream) → engine state → per-input context check and a
// total token budget → admission (degradation, memory) → a work slot → engine.embed → `dimensions`
// (Matryoshka: cut, then renormalize) → the route's `shape` of the answer. A client that disconnects
// cancels the batch (between inputs/chunks); the record is reported under route /v1/embeddings.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, toApiError } from '../common/errors.ts';
import { sanitizeMessage } from '../common/sanitize.ts';
import type { EngineErrorCode } from '../engine/types.ts';
import type { ServerContext } from './context.ts';
import type { ServedModelLease } from './models.ts';
import { boundEmbeddingTexts } from './prompt-bounds.ts';
import { forwardEmbeddings } from './remote/embeddings.ts';
import { requestAbort, SHUTDOWN_REASON } from './request-abort.ts';
import type { EmbeddingsLimits, EmbeddingsRequest } from './validate-embeddings.ts';

/** Truncates to `dims` and renormalizes (a prefix of a unit vector is not unit length). */
export function truncateAndRenormalize(v: Float32Array, dims: number): Float32Array {
  if (dims >= v.length) return v;
  const out = v.slice(0, dims);
  let ss = 0;
  for (let i = 0; i < dims; i++) ss += out[i] * out[i];
  const n = Math.sqrt(ss);
  if (n > 0) for (let i = 0; i < dims; i++) out[i] = out[i] / n;
  return out;
}

function engineError(code: EngineErrorCode | undefined, message: string, retryAfter: number): ApiError {
  switch (code) {
    case 'context_length_exceeded':
      return new ApiError('context_length_exceeded', message, { param: 'input' });
    case 'invalid_request':
      return new ApiError('invalid_request', message, { param: 'input' });
    case 'engine_unavailable':
      return new ApiError('engine_unavailable', message || 'The engine is not available; retry shortly', { retryAfter });
    case 'engine_crashed':
      return new ApiError('engine_crashed', 'The engine stopped unexpectedly and is restarting; retry the request', { retryAfter });
    default:
      return new ApiError('internal_error', 'Internal error while computing embeddings');
  }
}

/** A finished batch, for the API that shapes the answer (OpenAI's here, Ollama's /api/embed). */
export interface EmbeddingsResult {
  modelId: string;
  /** One vector per input, already truncated to `dimensions` and renormalized. */
  vectors: Float32Array[];
  promptTokens: number;
}

/** Runs a validated embeddings request through the shared path (lease, gates, admission, slot, executor). */
export type RunEmbeddings = (request: FastifyRequest, reply: FastifyReply, r: EmbeddingsRequest, shape: (out: EmbeddingsResult) => unknown) => Promise<unknown>;

/** A runner bound to the server (what the embeddings routes call). */
export function embeddingsRunner(ctx: ServerContext, limits: EmbeddingsLimits): RunEmbeddings {
  return (request, reply, r, shape) => runEmbeddings(ctx, limits, request, reply, r, shape);
}

/** Token ids per input (bounded, then tokenized; token-id inputs checked against the vocabulary), within the context and the batch budget. */
async function tokenize(ctx: ServerContext, limits: EmbeddingsLimits, r: EmbeddingsRequest, lease: ServedModelLease, signal: AbortSignal): Promise<number[][]> {
  const info = lease.info;
  let inputs: number[][];
  if (r.input.kind === 'tokens') {
    if (r.input.ids.some((ids) => ids.some((t) => t >= info.vocabSize))) {
      throw new ApiError('invalid_value', 'token ids must be integers within the vocabulary', { param: 'input' });
    }
    inputs = r.input.ids;
  } else {
    // Bounded before tokenizing (prompt-bounds.ts); a large batch is tokenized in a worker thread.
    inputs = await ctx.lifecycle.encodeTexts(lease, boundEmbeddingTexts(r.input.texts, info.contextLength, limits.maxTotalTokens, r.truncate), signal);
  }
  const limit = info.contextLength;
  inputs = inputs.map((ids, i) => {
    if (ids.length === 0) throw new ApiError('invalid_value', `'input[${i}]' has no tokens`, { param: 'input' });
    if (ids.length <= limit) return ids;
    if (r.truncate) return ids.slice(0, limit);
    throw new ApiError(
      'context_length_exceeded',
      `This model's maximum context length is ${limit} tokens, but input[${i}] has ${ids.length} tokens. Shorten it (or send "truncate": true to cut it).`,
      { param: 'input' },
    );
  });
  const total = inputs.reduce((a, ids) => a + ids.length, 0);
  if (total > limits.maxTotalTokens) {
    throw new ApiError('invalid_value', `The inputs have ${total} tokens in total; at most ${limits.maxTotalTokens} are allowed per request`, { param: 'input' });
  }
  return inputs;
}

async function runEmbeddings(ctx: ServerContext, limits: EmbeddingsLimits, request: FastifyRequest, reply: FastifyReply, r: EmbeddingsRequest, shape: (out: EmbeddingsResult) => unknown): Promise<unknown> {
  const track = request.track!;
  const retryAfterSeconds = ctx.config.retryAfterSeconds;

  const res = reply.raw;
  const abort = requestAbort(res, track, ctx.shutdownSignal);

  let lease: ServedModelLease | null = null;
  let release: (() => void) | null = null;
  try {
    // A remote model (settings `remotes`): its upstream computes the vectors, through the
    // upstream's own queue and breaker (no lease, local admission or work slot).
    const upstream = ctx.remotes?.get(r.model) ?? null;
    if (upstream) {
      const out = await forwardEmbeddings(upstream, r, abort.signal);
      if (abort.signal.aborted) return finishAborted();
      track.promptTokens = out.promptTokens;
      return reply
        .code(200)
        .type('application/json; charset=utf-8')
        // An upstream that ignores `dimensions` still gets the client what it asked for.
        .send(shape({ modelId: upstream.id, vectors: out.vectors.map((v) => (r.dimensions !== null ? truncateAndRenormalize(v, r.dimensions) : v)), promptTokens: out.promptTokens }));
    }
    // Lease the named model (loads or switches it, as for chat); held until the batch is done so
    // the model is not switched away underneath it.
    lease = await ctx.models.acquire(r.model === null || r.model === '' ? null : r.model);
    if (abort.signal.aborted) return finishAborted();
    const modelId = lease.id;
    ctx.lifecycle.requireReady();
    const info = lease.info;
    const engine = ctx.engine;
    if (r.dimensions !== null && r.dimensions > info.hiddenSize) {
      throw new ApiError('invalid_value', `'dimensions' must be at most ${info.hiddenSize} for this model`, { param: 'dimensions' });
    }
    if (!engine.embed) throw new ApiError('not_found', 'Embeddings are not available with this engine');
    // A client that leaves while a worker tokenizes stops it (the outer catch finishes the request).
    const inputs = await tokenize(ctx, limits, r, lease, abort.signal);
    const total = inputs.reduce((a, ids) => a + ids.length, 0);
    track.promptTokens = total;

    const refusal = ctx.hooks.admission?.({
      route: 'embeddings',
      promptTokens: Math.max(...inputs.map((ids) => ids.length)),
      maxTokens: 0,
      ...ctx.slots.load,
    });
    if (refusal) throw refusal;
    try {
      release = await ctx.slots.acquire(abort.signal);
    } catch (err) {
      if (abort.signal.aborted) return finishAborted();
      throw err;
    }
    let result;
    try {
      result = await engine.embed({ requestId: track.id, inputs }, abort.signal);
    } catch (err) {
      if (abort.signal.aborted) return finishAborted();
      if ((err as { name?: string })?.name === 'AbortError') return finishAborted();
      const code = (err as { code?: EngineErrorCode })?.code;
      throw engineError(code, sanitizeMessage(err), retryAfterSeconds);
    }
    const vectors = result.embeddings.map((v) => (r.dimensions !== null ? truncateAndRenormalize(v, r.dimensions) : v));
    track.promptTokens = result.promptTokens;
    return reply
      .code(200)
      .type('application/json; charset=utf-8')
      .send(shape({ modelId, vectors, promptTokens: result.promptTokens }));
  } catch (err) {
    // Client gone: nothing to write; shutdown: 503 (finishAborted throws it).
    if (abort.signal.aborted) return finishAborted();
    const apiErr = toApiError(err);
    if (apiErr.code === 'internal_error') console.error(`[server] embeddings request ${track.id} failed: ${sanitizeMessage(err)}`);
    throw apiErr;
  } finally {
    release?.();
    lease?.release();
    abort.dispose();
  }

  function finishAborted(): FastifyReply | undefined {
    if (abort.signal.reason === SHUTDOWN_REASON) {
      track.cancelled = true;
      throw new ApiError('engine_unavailable', 'The server is shutting down', { retryAfter: retryAfterSeconds });
    }
    // The client is gone: nothing to write (recorded as 499 / cancelled).
    reply.hijack();
    if (!res.writableEnded) res.end();
    return undefined;
  }
}
