// THE request life cycle of every generating or embedding route, after the route validated its body
// and translated it into the internal request (prompt.ts InternalRequest):
//
//   lease the model (ServerModels: a library, or the one started model) → engine ready? →
//   prompt preparation (render + tokenize, context check, constraint, cache key; prompt.ts — large
//   prompts are rendered in a worker thread, prompt-pool.ts, so the event loop stays free) →
//   response cache → admission (degradation, memory) → queue slot → engine.generate with an
//   AbortSignal tied to the client's connection → the API's ResponseFormat writes the answer →
//   track (the RequestRecord for metrics) → slot and lease released.
//
// The last five steps are generation.ts runGeneration; a request naming a remote model goes to
// remote/generate.ts instead (its upstream's events relayed through the same writers). A route never
// touches leases, slots or the engine itself: it calls `generate(request, reply, internalRequest,
// format)` (or `withLease` for work that is not a generation, e.g. count_tokens). Embeddings have the
// same steps without a prompt or a writer: embedding-run.ts.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../common/errors.ts';
import type { EngineClient } from '../engine/types.ts';
import { runGeneration, type GenerationEnv, type ResponseFormat } from './generation.ts';
import type { ServerHooks } from './hooks.ts';
import type { ServedModelLease, ServerModels } from './models.ts';
import { prepareGeneration, type InternalRequest } from './prompt.ts';
import { checkPromptBounds } from './prompt-bounds.ts';
import type { PromptPool } from './prompt-pool.ts';
import { promptInput } from './prompt-render.ts';
import { requestAbort, SHUTDOWN_REASON } from './request-abort.ts';
import type { ChatRequest } from './validate.ts';
import type { WorkSlots } from './slots.ts';
import type { Remotes } from './remote/remotes.ts';
import { generateRemote } from './remote/generate.ts';

export type { InternalRequest };

export interface LifecycleContext {
  /** The local engine: it runs every leased model (remote models are relayed, see `remotes`). */
  engine: EngineClient;
  models: ServerModels;
  hooks: ServerHooks;
  slots: WorkSlots;
  defaultMaxTokens: number;
  keepAliveIntervalMs: number;
  retryAfterSeconds: number;
  /** Aborted when the server shuts down. */
  shutdownSignal: AbortSignal;
  /** Remote models (settings `remotes`): a request naming one is forwarded to its upstream. */
  remotes?: Remotes;
  /** Whether local models can answer at all (a remote's fallback needs one). */
  localFallback?: boolean;
  /** Renders + tokenizes prompts: large ones in worker threads. */
  prompts: PromptPool;
}

export interface Lifecycle {
  /** Runs one generation end to end and writes the response in `format`. Never leaves a lease or slot behind. */
  generate(request: FastifyRequest, reply: FastifyReply, r: InternalRequest, format: ResponseFormat): Promise<void>;
  /** Prompt tokens of a chat request as it would run (template, tools, thinking switch); null when the client left. */
  countChatTokens(reply: FastifyReply, r: ChatRequest): Promise<number | null>;
  /**
   * Leases the named model for `fn` (loads or switches it; the wait is part of the request's
   * latency). A client that left while the model was loading gets nothing (recorded as 499).
   */
  withLease(reply: FastifyReply, model: string | null, fn: (lease: ServedModelLease) => Promise<void>): Promise<void>;
  /** Throws 503 (+ Retry-After) when the local engine cannot take requests now. */
  requireReady(): void;
  /** Token ids of embedding inputs with the lease's tokenizer (large batches in a worker thread); rejects when `signal` aborts. */
  encodeTexts(lease: ServedModelLease, texts: string[], signal?: AbortSignal): Promise<number[][]>;
}

/** A step stopped because the client left: nothing more to write. */
const GONE = Symbol('client gone');

export function createLifecycle(ctx: LifecycleContext): Lifecycle {
  function requireReady(): void {
    const state = ctx.engine.state;
    if (state === 'ready') return;
    const retryAfter = ctx.retryAfterSeconds;
    if (state === 'loading') throw new ApiError('model_loading', 'The model is loading; retry shortly', { retryAfter });
    if (state === 'restarting') throw new ApiError('engine_restarting', 'The engine is restarting; retry shortly', { retryAfter });
    throw new ApiError('engine_unavailable', 'The engine is not running', { retryAfter: state === 'failed' ? 30 : retryAfter });
  }

  const envOf = (text: ServedModelLease['text'] | null): GenerationEnv => ({
    engine: ctx.engine,
    // A remote generation has no local text pipeline: its writers get pre-split events (ctx.output()).
    text: text as GenerationEnv['text'],
    hooks: ctx.hooks,
    slots: ctx.slots,
    keepAliveIntervalMs: ctx.keepAliveIntervalMs,
    retryAfterSeconds: ctx.retryAfterSeconds,
    shutdownSignal: ctx.shutdownSignal,
  });

  async function withLease(reply: FastifyReply, model: string | null, fn: (lease: ServedModelLease) => Promise<void>): Promise<void> {
    let clientGone = false;
    const onGone = () => {
      clientGone = true;
    };
    reply.raw.once('close', onGone);
    let lease: ServedModelLease;
    try {
      lease = await ctx.models.acquire(model === null || model === '' ? null : model);
    } finally {
      reply.raw.off('close', onGone);
    }
    try {
      if (clientGone) {
        reply.hijack();
        return;
      }
      await fn(lease);
    } finally {
      lease.release();
    }
  }

  async function generate(request: FastifyRequest, reply: FastifyReply, r: InternalRequest, format: ResponseFormat): Promise<void> {
    const track = request.track!;
    track.stream = r.stream;
    const upstream = ctx.remotes?.get(r.model) ?? null;
    if (upstream) {
      return generateRemote({ remotes: ctx.remotes!, env: envOf(null), hasLocal: ctx.localFallback !== false }, request, reply, r, format, upstream, (fb) =>
        generate(request, reply, fb, format),
      );
    }
    await withLease(reply, r.model, async (lease) => {
      if (r.kind === 'completions' && typeof r.prompt !== 'string' && r.prompt.some((t) => t >= lease.info.vocabSize)) {
        throw new ApiError('invalid_value', 'token ids must be integers within the vocabulary', { param: 'prompt' });
      }
      requireReady();
      const prep = await untilGone(reply, (signal) =>
        prepareGeneration(r, track, lease, format, {
          defaultMaxTokens: ctx.defaultMaxTokens,
          responseCache: !!ctx.hooks.responseCache,
          contextLimit: ctx.hooks.contextLimit,
          prompts: ctx.prompts,
          signal,
        }),
      );
      if (prep === GONE) return;
      const run = runGeneration(envOf(lease.text), prep, reply, track);
      track.settled = run;
      await run;
    });
  }

  async function countChatTokens(reply: FastifyReply, r: ChatRequest): Promise<number | null> {
    let n: number | null = null;
    await withLease(reply, r.model, async (lease) => {
      checkPromptBounds(r, lease.info.contextLength); // no render at all of what cannot fit
      const rendered = await untilGone(reply, (signal) => ctx.prompts.render(lease.text, promptInput(r), { signal, withConstraint: false, keepIdsBelow: 0 }));
      if (rendered !== GONE) n = rendered.count;
    });
    return n;
  }

  /**
   * Runs a step that can take a while (a render in a worker) and stops it when the client leaves
   * (the response is ended, recorded as cancelled: GONE) or the server shuts down (503).
   */
  async function untilGone<T>(reply: FastifyReply, step: (signal: AbortSignal) => Promise<T>): Promise<T | typeof GONE> {
    const track = reply.request.track!;
    const abort = requestAbort(reply.raw, track, ctx.shutdownSignal);
    try {
      return await step(abort.signal);
    } catch (err) {
      if (!abort.signal.aborted) throw err;
      if (abort.signal.reason === SHUTDOWN_REASON) {
        track.cancelled = true;
        throw new ApiError('engine_unavailable', 'The server is shutting down', { retryAfter: ctx.retryAfterSeconds });
      }
      reply.hijack();
      if (!reply.raw.writableEnded) reply.raw.end();
      return GONE;
    } finally {
      abort.dispose();
    }
  }

  const encodeTexts = (lease: ServedModelLease, texts: string[], signal?: AbortSignal) => ctx.prompts.encodeTexts(lease.text, texts, signal);

  return { generate, countChatTokens, withLease, requireReady, encodeTexts };
}
