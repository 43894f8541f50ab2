// Forwarding an internal chat request to a real loopback upstream: events in order, usage, the
// request body the upstream sees, disconnect propagation and a mid-stream failure.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { openRemote, relayRemote } from '../../../main/server/remote/forward.ts';
import type { EngineEvent } from '../../../main/engine/types.ts';
import { Remotes } from '../../../main/server/remote/remotes.ts';
import { ApiError } from '../../../main/common/errors.ts';
import type { OutputEvent } from '../../../main/server/output-split.ts';
import type { ChatRequest } from '../../../main/server/validate.ts';
import { startFakeUpstream } from './fake-upstream.ts';

const up = await startFakeUpstream();
const remotes = new Remotes([{ id: 'box', baseURL: up.baseURL, model: 'served-name' }], { retries: 0 });
after(async () => {
  remotes.close();
  await up.close();
});

/** Opens + relays like the life cycle does; collects the relayed output events and the done event. */
async function forward(request: ChatRequest, maxTokens: number | null, signal: AbortSignal, onEvents: (e: OutputEvent[]) => void = () => {}) {
  const u = remotes.get('box')!;
  const call = await openRemote(u, { ...request, maxTokens }, signal);
  let done: Extract<EngineEvent, { type: 'done' }> | null = null;
  for await (const ev of relayRemote(call, u, 'req_test', signal)) {
    if (ev.type === 'delta') onEvents((ev as unknown as { events: OutputEvent[] }).events);
    if (ev.type === 'done') done = ev;
  }
  return done!;
}

function chat(over: Partial<ChatRequest> = {}): ChatRequest {
  return {
    kind: 'chat',
    model: 'box',
    stream: true,
    includeUsage: false,
    sampling: { temperature: 0.5, topP: 0.9, topK: 0, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, seed: 7, stop: ['END'] },
    maxTokens: 64,
    constraint: { schema: { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] } },
    logprobs: null,
    messages: [{ role: 'user', content: 'hi' }],
    tools: null,
    toolChoice: 'auto',
    templateKwargs: { enable_thinking: false },
    ...over,
  } as ChatRequest;
}

test('forward: upstream chunks become our events in order; usage and the upstream request body are right', async () => {
  up.setModes({ kind: 'ok', text: 'alpha beta gamma ', chunks: 3 });
  const events: OutputEvent[] = [];
  const ctl = new AbortController();
  const res = await forward(chat(), 64, ctl.signal, (e) => void events.push(...e));
  assert.deepEqual(events.map((e) => (e.type === 'content' ? e.text : e.type)), ['alpha ', 'beta ', 'gamma ']);
  assert.equal(res.finishReason, 'stop');
  assert.equal(res.completionTokens, 3);
  assert.equal(res.promptTokens, 5);
  const sent = up.requests.at(-1)!.body;
  assert.equal(sent.model, 'served-name');
  assert.equal(sent.stream, true);
  assert.deepEqual(sent.stream_options, { include_usage: true });
  assert.equal(sent.max_tokens, 64);
  assert.equal(sent.temperature, 0.5);
  assert.equal(sent.top_p, 0.9);
  assert.equal(sent.seed, 7);
  assert.deepEqual(sent.stop, ['END']);
  assert.equal(sent.response_format.type, 'json_schema');
  assert.deepEqual(sent.response_format.json_schema.schema.required, ['a']);
  assert.deepEqual(sent.chat_template_kwargs, { enable_thinking: false });
});

test('forward: finished streams hand their connection back: sequential requests reuse one upstream socket (keep-alive)', async () => {
  up.setModes({ kind: 'ok', text: 'a b ', chunks: 2 });
  const ctl = new AbortController();
  await forward(chat(), 8, ctl.signal); // may open a connection (or reuse one)
  const before = up.connections;
  for (let i = 0; i < 5; i++) {
    const done = await forward(chat(), 8, ctl.signal);
    assert.equal(done.finishReason, 'stop');
  }
  assert.equal(up.connections, before, 'no new TCP connection per forwarded request');
});

test('forward: a client that goes away aborts the upstream request (its socket is closed mid-stream)', async () => {
  up.setModes({ kind: 'ok', text: 'x ', chunks: 500 });
  const closedBefore = up.clientClosed;
  const ctl = new AbortController();
  let n = 0;
  const done = await forward(chat(), null, ctl.signal, () => {
    if (++n === 3) ctl.abort();
  });
  assert.equal(done.finishReason, 'cancelled');
  for (let i = 0; i < 100 && up.clientClosed === closedBefore; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(up.clientClosed, closedBefore + 1, 'the upstream saw the disconnect');
  assert.equal(remotes.get('box')!.breaker.state, 'closed', 'a client leaving is not the upstream failing');
});

test('forward: an upstream that dies mid-stream is an upstream_error for the client and a fault for the breaker', async () => {
  up.setModes({ kind: 'drop-mid', afterChunks: 2 });
  const events: OutputEvent[] = [];
  const u = remotes.get('box')!;
  const before = u.stats().errors.upstream_error ?? 0;
  await assert.rejects(
    forward(chat(), null, new AbortController().signal, (e) => void events.push(...e)),
    (e: unknown) => e instanceof ApiError && e.code === 'upstream_error' && !e.message.includes('127.0.0.1'),
  );
  assert.equal(events.length, 2);
  assert.equal(u.stats().errors.upstream_error, before + 1);
});
