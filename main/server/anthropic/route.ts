// POST /v1/messages and /v1/messages/count_tokens (Anthropic Messages API, for Claude Code and the
// Anthropic SDKs). The route only translates: request.ts turns the body into the internal chat
// request, the shared life cycle (generation.ts via `generate`) runs it exactly like an OpenAI chat
// request (prefix cache, response cache, queue, memory admission, degradation, metrics and the
// Host/Origin/key gates all apply), and the ResponseFormat below writes Anthropic's message or its
// SSE events. Auth: `x-api-key` or `Authorization: Bearer` (security.ts); `anthropic-version` and
// `anthropic-beta` headers are accepted and need nothing from us.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { bodyObject } from '../body.ts';
import type { ResponseFormat, ResponseWriter, WriterContext } from '../generation.ts';
import { framedWriter } from '../framed-writer.ts';
import type { ChatRequest, CompletionRequest } from '../validate.ts';
import { anthropicErrorBody } from './errors.ts';
import { validateAnthropicRequest } from './request.ts';
import { AnthropicMessageBuilder } from './response.ts';

export interface AnthropicRouteDeps {
  generate(request: FastifyRequest, reply: FastifyReply, r: ChatRequest | CompletionRequest, format: ResponseFormat): Promise<void>;
  countChatTokens(reply: FastifyReply, r: ChatRequest): Promise<number | null>;
  maxStopLength: number;
}

/** Anthropic's keep-alive: a `ping` event (the SDKs skip it). */
const PING_FRAME = 'event: ping\ndata: {"type":"ping"}\n\n';

export function anthropicFormat(opts: { showThinking: boolean; thinkingOmitted: boolean }): ResponseFormat {
  return {
    idPrefix: 'msg_',
    sse: { keepAliveFrame: PING_FRAME, doneFrame: null },
    errorBody: (err, requestId) => anthropicErrorBody(err, requestId),
    async streamError(sse, err, requestId) {
      await sse.sendEvent('error', anthropicErrorBody(err, requestId));
      await sse.done();
    },
    writer: (ctx) => anthropicWriter(ctx, opts),
  };
}

function anthropicWriter(ctx: WriterContext, opts: { showThinking: boolean; thinkingOmitted: boolean }): ResponseWriter {
  const { prep, track } = ctx;
  const builder = new AnthropicMessageBuilder({ ...opts, id: prep.id, model: prep.modelId });
  // The split always runs so thinking never leaks into the answer; it is shown only when asked.
  return framedWriter(ctx, ctx.output({ reasoning: true }), {
    // message_start, then a ping (as Anthropic's own stream does).
    start: (prompt) => [...builder.start(prompt), { event: 'ping', data: { type: 'ping' } }],
    push: (events) => builder.push(events),
    finish(ev) {
      const frames = builder.finish({
        stopReason: ev.stopReason,
        stopString: ev.stopString ?? (prep.sampling.stop.length === 1 ? prep.sampling.stop[0] : null),
        promptTokens: ev.promptTokens,
        cachedTokens: ev.cachedTokens,
        completionTokens: ev.completionTokens,
      });
      track.finishReason = builder.stopReasonName;
      return frames;
    },
    body: () => builder.message(),
  });
}

export function registerAnthropicRoutes(app: FastifyInstance, deps: AnthropicRouteDeps): void {
  app.post('/v1/messages', async (request, reply) => {
    const a = validateAnthropicRequest(bodyObject(request), { maxStopLength: deps.maxStopLength });
    await deps.generate(request, reply, a.chat, anthropicFormat({ showThinking: a.thinking, thinkingOmitted: a.thinkingOmitted }));
  });

  app.post('/v1/messages/count_tokens', async (request, reply) => {
    const a = validateAnthropicRequest(bodyObject(request), { maxStopLength: deps.maxStopLength, countOnly: true });
    const n = await deps.countChatTokens(reply, a.chat);
    if (n === null) return reply; // the client left while the model loaded
    return { input_tokens: n };
  });
}
