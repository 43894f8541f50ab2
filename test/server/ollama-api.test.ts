// The Ollama API (`/api/*`, what VS Code Copilot's Ollama provider, Open WebUI, Raycast and many
// scripts speak) through the real server and engine with the official `ollama` npm client, on a
// tiny RANDOM-weight model with the real Qwen3 tokenizer and chat template. Ollama has no
// tool_choice, and a random model practically never writes a tool call by itself: the tool test
// replays a recorded model output through the response cache (the server's own replay path, which
// runs the same tool-call parsing as a live generation) — see `toolCache` below.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Ollama, type ChatResponse } from 'ollama';
import { Ajv } from 'ajv';
import type { CachedGeneration, ResponseCacheKey } from '../../main/server/hooks.ts';
import { LEAK_RE, postJson, rawRequest, startStack, type TestStack } from './helpers.ts';

let stack: TestStack;
let ollama: Ollama;
let model: string;

/** Replays a recorded tool call for requests whose prompt ends in the marker; every other request misses. */
const TOOL_MARKER = 'ZZTOOLCALL';
const recordedCall = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
const toolCache = {
  get(key: ResponseCacheKey): CachedGeneration | null {
    if (!stack || !stack.text.decode(key.promptIds).includes(TOOL_MARKER)) return null;
    return { text: recordedCall, finishReason: 'stop', stopReason: 'eos', promptTokens: key.promptIds.length, completionTokens: 20 };
  },
  set() {},
};

before(async () => {
  stack = await startStack({ hooks: { responseCache: toolCache } });
  model = stack.modelInfo.id;
  ollama = new Ollama({ host: stack.url });
});
after(async () => {
  await stack?.close();
});

describe('models', { timeout: 120_000 }, () => {
  test('list / show / ps / version', async () => {
    const list = await ollama.list();
    assert.deepEqual(
      list.models.map((m) => m.name),
      [model],
    );
    const m = list.models[0]!;
    assert.equal(m.model, model);
    assert.equal(m.details.family, stack.modelInfo.architecture);
    assert.ok(m.size > 0);
    assert.ok(!Number.isNaN(new Date(m.modified_at).getTime()));

    const show = await ollama.show({ model });
    assert.ok(show.capabilities.includes('completion'));
    assert.ok(show.capabilities.includes('tools'), 'the Qwen3 template has a tool-call format');
    assert.ok(show.capabilities.includes('thinking'), 'the Qwen3 template has enable_thinking');
    const info = show.model_info as unknown as Record<string, unknown>;
    assert.equal(info[`${stack.modelInfo.architecture}.context_length`], stack.modelInfo.contextLength);
    // `:latest` (what Ollama clients append) names the same model.
    assert.equal((await ollama.show({ model: `${model}:latest` })).details.family, stack.modelInfo.architecture);

    const ps = await ollama.ps();
    assert.deepEqual(
      ps.models.map((p) => p.name),
      [model],
    );
    const v = await ollama.version();
    assert.match(v.version, /^\d+\.\d+\.\d+$/);
  });

  test('unknown models: Ollama error shape with a 404', async () => {
    await assert.rejects(ollama.show({ model: 'nope' }), (e: unknown) => (e as { status_code?: number }).status_code === 404 && /nope/.test((e as Error).message));
    const r = await postJson(stack.port, '/api/chat', { model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.status, 404);
    const body = JSON.parse(r.body) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body), ['error']);
    assert.equal(typeof body.error, 'string');
  });
});

describe('chat and generate', { timeout: 600_000 }, () => {
  test('chat: non-stream and stream (NDJSON) give the same text; done line with counts', async () => {
    const req = { model, messages: [{ role: 'user', content: 'Say something.' }], options: { temperature: 0, num_predict: 8 } };
    const one = await ollama.chat({ ...req, stream: false });
    assert.equal(one.done, true);
    assert.equal(one.message.role, 'assistant');
    assert.ok(one.done_reason === 'stop' || one.done_reason === 'length');
    assert.ok(one.eval_count >= 1 && one.eval_count <= 8);
    assert.ok(one.prompt_eval_count > 3);
    assert.ok(one.total_duration > 0);

    const parts: ChatResponse[] = [];
    for await (const p of await ollama.chat({ ...req, stream: true })) parts.push(p);
    assert.ok(parts.length >= 2);
    assert.ok(parts.slice(0, -1).every((p) => p.done === false));
    const last = parts.at(-1)!;
    assert.equal(last.done, true);
    assert.equal(last.eval_count, one.eval_count);
    assert.equal(parts.map((p) => p.message.content).join(''), one.message.content);
  });

  test('the raw route streams NDJSON by default (no `stream` field), one JSON object per line', async () => {
    const r = await postJson(stack.port, '/api/chat', { model, messages: [{ role: 'user', content: 'x' }], options: { num_predict: 3 } });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /application\/x-ndjson/);
    const lines = r.body.trim().split('\n').map((l) => JSON.parse(l) as { done: boolean });
    assert.ok(lines.length >= 2);
    assert.equal(lines.at(-1)!.done, true);
  });

  test('generate: stream and non-stream; raw prompt; empty prompt loads the model', async () => {
    const g = await ollama.generate({ model, prompt: 'Once upon a time', options: { temperature: 0, num_predict: 6 } });
    assert.equal(g.done, true);
    assert.equal(typeof g.response, 'string');
    let text = '';
    for await (const p of await ollama.generate({ model, prompt: 'Once upon a time', options: { temperature: 0, num_predict: 6 }, stream: true })) text += p.response;
    assert.equal(text, g.response);
    const raw = await ollama.generate({ model, prompt: 'Once upon a time', raw: true, options: { num_predict: 2 } });
    assert.ok(raw.prompt_eval_count < g.prompt_eval_count, 'raw skips the chat template');
    const load = await ollama.generate({ model, prompt: '' });
    assert.equal(load.done_reason, 'load');
  });

  test('options: stop, seed and num_ctx are honoured', async () => {
    const a = await ollama.chat({ model, messages: [{ role: 'user', content: 'x' }], options: { temperature: 1, seed: 7, num_predict: 6 } });
    const b = await ollama.chat({ model, messages: [{ role: 'user', content: 'x' }], options: { temperature: 1, seed: 7, num_predict: 6 } });
    assert.equal(a.message.content, b.message.content, 'same seed, same text');
    await assert.rejects(
      ollama.chat({ model, messages: [{ role: 'user', content: 'a fairly long question to ask.' }], options: { num_ctx: 4 } }),
      (e: unknown) => (e as { status_code?: number }).status_code === 400 && /context/i.test((e as Error).message),
    );
    const capped = await ollama.chat({ model, messages: [{ role: 'user', content: 'x' }], options: { num_ctx: 20, num_predict: -2 } });
    assert.ok(capped.prompt_eval_count + capped.eval_count <= 20, `${capped.prompt_eval_count} + ${capped.eval_count}`);
  });

  test('format: a JSON Schema (and "json") constrain the answer', async () => {
    const schema = { type: 'object', properties: { n: { type: 'integer' }, ok: { type: 'boolean' } }, required: ['n', 'ok'] };
    const r = await ollama.chat({ model, messages: [{ role: 'user', content: 'JSON please' }], format: schema, options: { num_predict: 200 } });
    assert.equal(r.done_reason, 'stop');
    assert.ok(new Ajv().compile(schema)(JSON.parse(r.message.content)), r.message.content);
    // "json" has no bounds: a random model may write one long string until num_predict.
    const j = await ollama.generate({ model, prompt: 'JSON please', format: 'json', options: { num_predict: 60 } });
    assert.match(j.response ?? '', /^\s*\{/);
    if (j.done_reason === 'stop') assert.equal(typeof JSON.parse(j.response ?? ''), 'object');
  });

  test('think: false renders the non-thinking prompt (the template\'s empty think block)', async () => {
    // (Measured with the stack's own tokenizer, the real Qwen3 one.)
    const thinkBlock = stack.text.encode('<think>\n\n</think>\n\n', { addSpecialTokens: false }).length;
    assert.ok(thinkBlock > 0);
    const req = { model, messages: [{ role: 'user', content: 'hi' }], options: { num_predict: 1 } };
    const on = await ollama.chat(req);
    const off = await ollama.chat({ ...req, think: false });
    assert.equal(off.prompt_eval_count, on.prompt_eval_count + thinkBlock);
  });

  test('tools: the model\'s call comes back as message.tool_calls with object arguments (stream and not); the round trip renders the result', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
    const messages = [{ role: 'user', content: `Weather in Paris? ${TOOL_MARKER}` }];
    const r = await ollama.chat({ model, messages, tools, options: { temperature: 0 } });
    assert.deepEqual(r.message.tool_calls?.map((c) => c.function), [{ index: 0, name: 'get_weather', arguments: { city: 'Paris' } }]);
    assert.equal(r.message.content, '');
    const parts: ChatResponse[] = [];
    for await (const p of await ollama.chat({ model, messages, tools, options: { temperature: 0 }, stream: true })) parts.push(p);
    const calls = parts.flatMap((p) => p.message.tool_calls ?? []);
    assert.deepEqual(calls.map((c) => c.function.arguments), [{ city: 'Paris' }]);
    // Round trip (live generation): the call and its result are rendered into the prompt.
    const follow = await ollama.chat({
      model,
      messages: [{ role: 'user', content: 'Weather in Paris?' }, { ...r.message, content: r.message.content ?? '' }, { role: 'tool', content: '{"temp": 21}', tool_name: 'get_weather' }],
      tools,
      options: { num_predict: 3 },
    });
    const bare = await ollama.chat({ model, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, options: { num_predict: 3 } });
    assert.equal(follow.done, true);
    assert.ok(follow.prompt_eval_count > bare.prompt_eval_count + 10);
  });

  test('bad input: Ollama error shape, field named, nothing leaked', async () => {
    for (const body of [
      { model, messages: [{ role: 'user', content: 'x' }], options: { temperature: 'hot' } },
      { model, messages: [{ role: 'user', content: 'x' }], format: 'yaml' },
      { model, messages: 'nope' },
      { model, messages: [{ role: 'user', content: 'x', images: ['aGk='] }] },
    ]) {
      const r = await postJson(stack.port, '/api/chat', body);
      assert.equal(r.status, 400, r.body);
      const parsed = JSON.parse(r.body) as Record<string, unknown>;
      assert.deepEqual(Object.keys(parsed), ['error']);
      assert.doesNotMatch(r.body, LEAK_RE);
    }
    const notJson = await rawRequest(stack.port, { method: 'POST', path: '/api/chat', headers: { 'content-type': 'application/json' }, body: '{nope' });
    assert.equal(notJson.status, 400);
    assert.equal(typeof (JSON.parse(notJson.body) as { error: unknown }).error, 'string');
  });
});

describe('embeddings', { timeout: 300_000 }, () => {
  test('embed (one and many) and the legacy embeddings route', async () => {
    const one = await ollama.embed({ model, input: 'hello' });
    assert.equal(one.embeddings.length, 1);
    assert.equal(one.embeddings[0]!.length, stack.modelInfo.hiddenSize);
    assert.ok(one.prompt_eval_count >= 1);
    const many = await ollama.embed({ model, input: ['a', 'b'] });
    assert.equal(many.embeddings.length, 2);
    const legacy = await ollama.embeddings({ model, prompt: 'hello' });
    assert.deepEqual(legacy.embedding, one.embeddings[0]);
  });
});
