// OpenAI's wire format for /v1/chat/completions and /v1/completions (the ResponseFormat the shared
// life cycle in generation.ts calls): chat.completion / text_completion bodies, `chat.completion.chunk`
// SSE with `data: [DONE]`, usage with `prompt_tokens_details.cached_tokens`, logprobs, tool calls and
// the reasoning split (`reasoning_content`, as llama-server and vLLM: a leading `<think>…</think>`
// block leaves `content`; streamed as `delta.reasoning_content`).
import type { ApiError } from '../common/errors.ts';
import type { EngineEvent, TokenLogprob } from '../engine/types.ts';
import type { DoneEvent, ResponseFormat, ResponseWriter, WriterContext } from './generation.ts';
import { collectEvents, type OutputEvent } from './output-split.ts';
import type { SseWriter } from './sse.ts';

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

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  /** OpenAI's predicted-output counters, filled by lookup decoding's verified drafts. */
  completion_tokens_details?: { accepted_prediction_tokens: number; rejected_prediction_tokens: number };
}

function usageOf(done: DoneEvent): Usage {
  return {
    prompt_tokens: done.promptTokens,
    completion_tokens: done.completionTokens,
    total_tokens: done.promptTokens + done.completionTokens,
    prompt_tokens_details: { cached_tokens: done.cachedTokens },
    ...(done.draftTokens !== undefined
      ? {
          completion_tokens_details: {
            accepted_prediction_tokens: done.acceptedDrafts ?? 0,
            rejected_prediction_tokens: done.draftTokens - (done.acceptedDrafts ?? 0),
          },
        }
      : {}),
  };
}

function finishReasonFor(done: DoneEvent, sawToolCall: boolean): 'stop' | 'length' | 'tool_calls' {
  if (done.finishReason === 'length') return 'length';
  return sawToolCall ? 'tool_calls' : 'stop';
}

/** The OpenAI format (also the error shape of every non-Anthropic route). */
export const openAIFormat: ResponseFormat = {
  errorBody: (err: ApiError) => err.toJSON(),
  async streamError(sse: SseWriter, err: ApiError) {
    await sse.send(err.toJSON());
    await sse.done();
  },
  writer: openAIWriter,
};

function openAIWriter(ctx: WriterContext): ResponseWriter {
  const { prep, sse, track } = ctx;
  // Reasoning first, then engine-text's tool-call parser on the answer (output-split.ts); the
  // non-stream path feeds the whole text through the same splitter, so both agree.
  const output = ctx.output();
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
  const sendStreamEvents = async (evs: OutputEvent[]) => {
    for (const ev of evs) {
      if (ev.type === 'reasoning') {
        if (ev.text) await sse!.send(chatChunk({ reasoning_content: ev.text }));
      } else if (ev.type === 'content') {
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

  function buildFinal(text: string, done: DoneEvent, usage: Usage, lps: TokenLogprob[] | null): unknown {
    const base = { id: prep.id, created: prep.created, model: prep.modelId, system_fingerprint: prep.systemFingerprint };
    if (prep.route === 'completions') {
      track.finishReason = done.finishReason;
      const logprobs = lps ? completionLogprobs(lps, 0) : null;
      return { ...base, object: 'text_completion', choices: [{ index: 0, text, logprobs, finish_reason: done.finishReason }], usage };
    }
    let out;
    try {
      out = collectEvents(output.all(text));
    } catch {
      out = { reasoning: null, content: text, toolCalls: [] };
    }
    const finish = finishReasonFor(done, out.toolCalls.length > 0);
    track.finishReason = finish;
    // `refusal: null`: the OpenAPI spec's ChatCompletionMessage always has it (we never refuse).
    const message: Record<string, unknown> = { role: 'assistant', content: out.content, refusal: null };
    if (out.reasoning !== null) message.reasoning_content = out.reasoning;
    if (out.toolCalls.length > 0) {
      message.tool_calls = out.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.function.name, arguments: c.function.arguments } }));
    }
    // With tool calls, `content` covers every generated token (the call's markup included).
    const logprobs = lps ? chatLogprobs(lps) : null;
    return { ...base, object: 'chat.completion', choices: [{ index: 0, message, logprobs, finish_reason: finish }], usage };
  }

  return {
    async prefill() {
      await sendRole();
    },
    async delta(ev: Extract<EngineEvent, { type: 'delta' }>) {
      if (wantLogprobs && ev.logprobs) {
        allLogprobs.push(...ev.logprobs);
        unsentLogprobs.push(...ev.logprobs);
      }
      if (sse) {
        await sendRole();
        await sendStreamEvents(output.push(ev));
      }
    },
    async done(ev: DoneEvent, text: string) {
      const usage = usageOf(ev);
      if (sse) {
        await sendRole();
        await sendStreamEvents(output.flush());
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
      ctx.writeJson(buildFinal(text, ev, usage, wantLogprobs ? allLogprobs : null));
    },
  };
}
