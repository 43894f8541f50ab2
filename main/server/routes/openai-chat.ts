// POST /v1/chat/completions and /v1/completions (OpenAI): validate the body (validate.ts) into the
// internal request, then the shared life cycle with OpenAI's wire format (openai-writer.ts).
import type { FastifyReply, FastifyRequest } from 'fastify';
import { bodyObject } from '../body.ts';
import type { RoutePlugin } from '../context.ts';
import { openAIFormat } from '../openai-writer.ts';
import { validateChatRequest, validateCompletionRequest } from '../validate.ts';

export const openAIChatRoutes: RoutePlugin = (app, ctx) => {
  async function handle(request: FastifyRequest, reply: FastifyReply, kind: 'chat' | 'completions') {
    const body = bodyObject(request);
    const r =
      kind === 'chat'
        ? validateChatRequest(body, { maxStopLength: ctx.config.maxStopLength })
        : validateCompletionRequest(body, {
            maxStopLength: ctx.config.maxStopLength,
            // Token ids are checked against the leased model's vocabulary by the life cycle.
            vocabSize: Number.MAX_SAFE_INTEGER,
          });
    await ctx.lifecycle.generate(request, reply, r, openAIFormat);
  }
  ctx.declareRoute('/v1/chat/completions', ['POST']);
  ctx.declareRoute('/v1/completions', ['POST']);
  app.post('/v1/chat/completions', (request, reply) => handle(request, reply, 'chat'));
  app.post('/v1/completions', (request, reply) => handle(request, reply, 'completions'));
};
