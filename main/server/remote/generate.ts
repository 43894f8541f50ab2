// The life cycle's branch for a remote model: the same gates (already passed), tracking, API
// format and abort-on-disconnect as a local generation, with the upstream's events instead of the
// engine's — and none of the local-only steps (prompt rendering/tokenizing, prefix or response
// cache, memory admission, the local queue slot: the upstream has its own queue and breaker).
// Nothing is written to the client until the upstream answered, so an unhealthy upstream can still
// be answered by the local fallback model its settings name (`x-mlxbar-fallback-from` header; the
// body's `model` says which model answered).
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../../common/errors.ts';
import { randomId, runGeneration, type GenerationEnv, type PreparedGeneration, type ResponseFormat } from '../generation.ts';
import type { InternalRequest } from '../prompt.ts';
import { fallbackAllowed, openRemoteChat, relayRemoteChat } from './forward.ts';
import type { RemoteUpstream, Remotes, UpstreamCall } from './remotes.ts';

export interface RemoteGenerateContext {
  remotes: Remotes;
  /** The environment runGeneration uses (its engine is unused: events come from the upstream). */
  env: GenerationEnv;
  /** Whether `id` names a local model a fallback may use (the remote's `fallback` setting). */
  hasLocal: boolean;
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
  if (r.kind !== 'chat') throw new ApiError('invalid_value', `The remote model "${upstream.id}" serves chat requests only`, { param: 'model' });
  if (r.logprobs !== null) throw new ApiError('unsupported_parameter', `logprobs are not available for the remote model "${upstream.id}"`, { param: 'logprobs' });
  const ctl = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) ctl.abort();
  };
  reply.raw.once('close', onClose);
  let call: UpstreamCall;
  try {
    call = await openRemoteChat(upstream, r, r.maxTokens, AbortSignal.any([ctl.signal, ctx.env.shutdownSignal]));
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
  const prep: PreparedGeneration = {
    route: 'chat',
    id: randomId(format.idPrefix ?? 'chatcmpl-'),
    created: Math.floor(Date.now() / 1000),
    modelId: upstream.id,
    systemFingerprint: 'fp_remote',
    promptIds: [],
    sampling: { ...r.sampling, maxTokens: r.maxTokens ?? 0 },
    stream: r.stream,
    includeUsage: r.includeUsage,
    toolsActive: r.tools !== null,
    constraint: null,
    cacheKey: null,
    logprobs: null,
    reasoning: r.splitReasoning,
    startInThinking: false,
    format,
  };
  const run = runGeneration(ctx.env, prep, reply, track, (signal) => relayRemoteChat(call, upstream, track.id, signal));
  track.settled = run;
  await run;
}
