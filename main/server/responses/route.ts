// POST /v1/responses, GET and DELETE /v1/responses/{id} (OpenAI Responses API: openai-node's
// `client.responses.*`, Codex CLI's `wire_api = "responses"`, the AI SDK's default OpenAI provider).
// The route only translates: request.ts turns the body into the internal chat request, the shared
// life cycle (`generate`: model lease, prompt, context check, response cache, admission, queue,
// engine, metrics, Host/Origin/key gates) runs it like any chat request, and the ResponseFormat below
// writes the Response object or its stream events through one encoder (output.ts). Errors keep
// OpenAI's shape. Stored responses live in memory (store.ts).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../../common/errors.ts';
import { bodyObject } from '../body.ts';
import type { DoneEvent, ResponseFormat, ResponseWriter, WriterContext } from '../generation.ts';
import { framedWriter } from '../framed-writer.ts';
import type { OutputDone } from '../output-events.ts';
import type { ChatRequest, CompletionRequest } from '../validate.ts';
import { validateResponsesRequest, type ResponsesRequest } from './request.ts';
import { ResponsesEncoder, type ResponsesFrame } from './output.ts';
import { conversationAfter, type ResponseStore } from './store.ts';

export interface ResponsesRouteDeps {
  generate(request: FastifyRequest, reply: FastifyReply, r: ChatRequest | CompletionRequest, format: ResponseFormat): Promise<void>;
  maxStopLength: number;
  store: ResponseStore;
}

const ID_RE = /^resp_[A-Za-z0-9]{1,64}$/;

/** The life cycle's `done` event → what every dialect encoder takes. */
export function outputDoneOf(ev: DoneEvent, sawToolCall: boolean, startedAt: number): OutputDone {
  return {
    finishReason: ev.finishReason === 'length' ? 'length' : sawToolCall ? 'tool_calls' : 'stop',
    promptTokens: ev.promptTokens,
    cachedTokens: ev.cachedTokens,
    completionTokens: ev.completionTokens,
    prefillMs: ev.prefillMs,
    decodeMs: ev.decodeMs,
    totalMs: Math.max(0, performance.now() - startedAt),
  };
}

export function responsesFormat(rr: ResponsesRequest, store: ResponseStore): ResponseFormat {
  // One encoder per request, shared by the writer and the in-stream error path (sequence numbers).
  let encoder: ResponsesEncoder | null = null;
  let started = false;
  return {
    idPrefix: 'resp_',
    // Named events, `: ping` comments as keep-alives (the SDK skips them), no `[DONE]`.
    sse: { doneFrame: null },
    errorBody: (err) => err.toJSON(),
    async streamError(sse, err) {
      if (encoder) {
        const frames = started ? encoder.fail(err) : [...encoder.start(), ...encoder.fail(err)];
        for (const f of frames) await sse.sendEvent(f.event, f.data);
      } else {
        await sse.sendEvent('error', { type: 'error', sequence_number: 0, code: err.code, message: err.message, param: err.param });
      }
      await sse.done();
    },
    writer(ctx: WriterContext): ResponseWriter {
      const { prep, track } = ctx;
      const enc = new ResponsesEncoder({
        id: prep.id,
        created_at: prep.created,
        model: prep.modelId,
        instructions: rr.instructions,
        previous_response_id: rr.previousResponseId,
        store: rr.store,
        echo: rr.echo,
      });
      encoder = enc;
      let sawToolCall = false;
      return framedWriter(ctx, ctx.output(), {
        start() {
          started = true;
          return enc.start();
        },
        push(events) {
          const frames: ResponsesFrame[] = [];
          for (const ev of events) {
            if (ev.type === 'tool_call') sawToolCall = true;
            frames.push(...enc.push(ev));
          }
          return frames;
        },
        finish(ev) {
          const frames = enc.finish(outputDoneOf(ev, sawToolCall, track.startedAt));
          track.finishReason = ev.finishReason === 'length' ? 'length' : sawToolCall ? 'tool_calls' : 'stop';
          return frames;
        },
        body: () => enc.response,
        // Called right after the last byte is handed to the socket, in the same turn of the event loop:
        // the client does not wait for the store's bookkeeping (sizing the entry, converting the output
        // to messages — profiled at ~0.1 ms, most of this API's overhead over chat completions), and no
        // later request (a GET or a previous_response_id) can run before the entry is there.
        afterEnd() {
          if (!rr.store) return;
          const response = enc.response;
          store.set(prep.id, { response, messages: conversationAfter([...rr.history, ...rr.inputMessages], response) });
        },
      });
    },
  };
}

function storedId(request: FastifyRequest): string {
  const id = String((request.params as { id?: string }).id ?? '');
  if (!ID_RE.test(id)) throw new ApiError('not_found', 'No stored response with this id');
  return id;
}

export function registerResponsesRoutes(app: FastifyInstance, deps: ResponsesRouteDeps): void {
  const keptFor = `${Math.round(deps.store.limits.ttlMs / 60_000)} minutes`;

  app.post('/v1/responses', async (request, reply) => {
    const body = bodyObject(request);
    let history: ResponsesRequest['history'] = [];
    const prev = body.previous_response_id;
    if (prev !== undefined && prev !== null) {
      if (typeof prev !== 'string') throw new ApiError('invalid_value', "'previous_response_id' must be a string", { param: 'previous_response_id' });
      const stored = ID_RE.test(prev) ? deps.store.get(prev) : undefined;
      if (!stored) {
        throw new ApiError(
          'invalid_value',
          `Previous response '${prev.slice(0, 64)}' not found: responses are kept in memory for ${keptFor} after their last use (and not across restarts), and only when created with store: true`,
          { param: 'previous_response_id' },
        );
      }
      history = stored.messages;
    }
    const rr = validateResponsesRequest(body, { maxStopLength: deps.maxStopLength, history });
    await deps.generate(request, reply, rr.chat, responsesFormat(rr, deps.store));
  });

  app.get('/v1/responses/:id', async (request) => {
    const stored = deps.store.get(storedId(request));
    if (!stored) throw new ApiError('not_found', `No stored response with this id (kept in memory for ${keptFor} after their last use)`);
    return stored.response;
  });

  app.delete('/v1/responses/:id', async (request) => {
    const id = storedId(request);
    if (!deps.store.delete(id)) throw new ApiError('not_found', 'No stored response with this id');
    return { id, object: 'response', deleted: true };
  });
}
