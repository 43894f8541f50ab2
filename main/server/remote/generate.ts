// The life cycle's branch for a remote model: the same gates (already passed), tracking, API
// format and abort-on-disconnect as a local generation, with the upstream's events instead of the
// engine's — and none of the local-only steps (prompt rendering/tokenizing, prefix cache, memory
// admission, the local queue slot: the upstream has its own queue and breaker).
// The response cache applies with the local rules (temperature 0 or a seed, no logprobs; only
// finished answers are stored): it is asked before the upstream is contacted, so a cached answer
// costs the upstream nothing — and is served even while the upstream is down.
// Nothing is written to the client until the upstream answered, so an unhealthy upstream can still
// be answered by the local fallback model its settings name (`x-mlxbar-fallback-from` header; the
// body's `model` says which model answered).
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../../common/errors.ts';
import type { SamplingParams } from '../../engine/types.ts';
import { cacheGet, randomId, runGeneration, type GenerationEnv, type PreparedGeneration, type ResponseFormat } from '../generation.ts';
import type { ResponseCacheKey } from '../hooks.ts';
import type { InternalRequest } from '../prompt.ts';
import { fallbackAllowed, openRemote, relayRemote, upstreamRequest } from './forward.ts';
import type { RemoteUpstream, Remotes, UpstreamCall } from './remotes.ts';

export interface RemoteGenerateContext {
  remotes: Remotes;
  /** The environment runGeneration uses (its engine is unused: events come from the upstream). */
  env: GenerationEnv;
  /** Whether `id` names a local model a fallback may use (the remote's `fallback` setting). */
  hasLocal: boolean;
}

/**
 * The response-cache key of a deterministic remote request, else null. It holds the remote's id,
 * the upstream's model name and base URL (hashed, never stored in clear) and the body as sent
 * upstream without the stream flags, so a streamed and a non-streamed request share the entry.
 */
export function remoteCacheKey(r: InternalRequest, upstream: RemoteUpstream): ResponseCacheKey | null {
  const deterministic = r.sampling.temperature === 0 || r.sampling.seed !== undefined;
  if (!deterministic || r.logprobs !== null) return null;
  const sampling: SamplingParams = { ...r.sampling, maxTokens: r.maxTokens ?? 0 };
  if (sampling.seed === undefined) delete sampling.seed;
  const { path, body } = upstreamRequest(r, false);
  delete body.stream;
  return {
    route: r.kind,
    modelFingerprint: `remote:${upstream.id}:${upstream.client.upstreamModel}`,
    promptIds: [],
    sampling,
    toolsActive: r.kind === 'chat' && r.tools !== null,
    request: { baseURL: upstream.settings.baseURL, path, body },
  };
}

export async function generateRemote(
  ctx: RemoteGenerateContext,
  request: FastifyRequest,
  reply: FastifyReply,
  r: InternalRequest,
  format: ResponseFormat,
  upstream: RemoteUpstream,
  local: (r: InternalRequest) => Promise<void>,
): Promise<void> {
  const track = request.track!;
  if (r.logprobs !== null) throw new ApiError('unsupported_parameter', `logprobs are not available for the remote model "${upstream.id}"`, { param: 'logprobs' });
  const prep: PreparedGeneration = {
    route: r.kind,
    id: randomId(format.idPrefix ?? (r.kind === 'chat' ? 'chatcmpl-' : 'cmpl-')),
    created: Math.floor(Date.now() / 1000),
    modelId: upstream.id,
    systemFingerprint: 'fp_remote',
    promptIds: [],
    sampling: { ...r.sampling, maxTokens: r.maxTokens ?? 0 },
    stream: r.stream,
    includeUsage: r.includeUsage,
    toolsActive: r.kind === 'chat' && r.tools !== null,
    constraint: null,
    cacheKey: ctx.env.hooks.responseCache ? remoteCacheKey(r, upstream) : null,
    logprobs: null,
    reasoning: r.kind === 'chat' && r.splitReasoning,
    startInThinking: false,
    format,
  };
  const hit = await cacheGet(ctx.env.hooks, prep.cacheKey);
  if (hit) {
    const run = runGeneration(ctx.env, prep, reply, track, undefined, hit);
    track.settled = run;
    return run;
  }
  const ctl = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) ctl.abort();
  };
  reply.raw.once('close', onClose);
  let call: UpstreamCall;
  try {
    call = await openRemote(upstream, r, AbortSignal.any([ctl.signal, ctx.env.shutdownSignal]));
  } catch (err) {
    if (ctl.signal.aborted) {
      reply.hijack();
      reply.raw.destroy();
      return;
    }
    const fallback = upstream.settings.fallback;
    if (fallback && ctx.hasLocal && fallbackAllowed(err) && !ctx.remotes.get(fallback)) {
      upstream.countFallback();
      reply.header('x-mlxbar-fallback-from', upstream.id);
      return local({ ...r, model: fallback });
    }
    throw err;
  } finally {
    reply.raw.off('close', onClose);
  }
  // The miss was counted above; runGeneration must not ask the cache again.
  const run = runGeneration(ctx.env, prep, reply, track, (signal) => relayRemote(call, upstream, track.id, signal), null);
  track.settled = run;
  await run;
}
