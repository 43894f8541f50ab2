// Happy paths and error classes through the official `openai` npm client (v6) against the real
// server + real MLX engine on a tiny random-weight Qwen3-layout model.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startStack, type TestStack } from './helpers.ts';
import type { CachedGeneration, ResponseCacheKey } from '../../main/server/hooks.ts';

let stack: TestStack;
let client: OpenAI;
let model: string;

// The tool-call cache seam (see the tool-call tests): keys with tools active get a canned
// generation; everything else is a miss, so all other tests run on the engine for real.
const TOOL_TEXT = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>';
const cacheSets: ResponseCacheKey[] = [];
const toolCache = {
  get(key: ResponseCacheKey): CachedGeneration | null {
    if (!key.toolsActive) return null;
    return { text: TOOL_TEXT, finishReason: 'stop', stopReason: 'eos', promptTokens: key.promptIds.length, completionTokens: 27 };
  },
  set(key: ResponseCacheKey) {
    cacheSets.push(key);
  },
};

before(async () => {
  stack = await startStack({ hooks: { responseCache: toolCache } });
  model = stack.modelInfo.id;
  client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
});
after(async () => {
  await stack?.close();
});

const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Write a haiku about caches.' },
];

describe('openai client: happy paths', () => {
  test('models list names the loaded model', async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id);
    assert.deepEqual(ids, [model]);
    assert.equal(list.data[0].object, 'model');
  });

  test('non-stream chat completion has the OpenAI shape and exact usage', async () => {
    const res = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0 });
    assert.match(res.id, /^chatcmpl-/);
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.model, model);
    assert.equal(res.choices.length, 1);
    assert.equal(res.choices[0].message.role, 'assistant');
    assert.equal(typeof res.choices[0].message.content, 'string');
    assert.equal(res.choices[0].finish_reason, 'length');
    assert.equal(res.usage?.completion_tokens, 6);
    assert.ok((res.usage?.prompt_tokens ?? 0) > 5);
    assert.equal(res.usage?.total_tokens, (res.usage?.prompt_tokens ?? 0) + 6);
    assert.equal(typeof res.usage?.prompt_tokens_details?.cached_tokens, 'number');
  });

  test('stream with include_usage: chunk invariants, and deltas equal the non-stream content (same seed)', async () => {
    const params = { model, messages, max_tokens: 12, temperature: 0.9, seed: 1234 } as const;
    const full = await client.chat.completions.create(params);
    const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks.length >= 3);
    const { id, created, model: m } = chunks[0];
    for (const c of chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.id, id);
      assert.equal(c.created, created);
      assert.equal(c.model, m);
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    for (const c of chunks.slice(1)) if (c.choices[0]) assert.equal(c.choices[0].delta.role, undefined);
    const usageChunks = chunks.filter((c) => c.usage);
    assert.equal(usageChunks.length, 1, 'exactly one usage chunk');
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, [], 'usage chunk has no choices and comes last');
    assert.equal(last.usage?.completion_tokens, 12);
    // Lookup decoding's draft counters (completion_tokens_details) legitimately differ between the
    // two runs (the second drafts from the first's output); everything else must match.
    const { completion_tokens_details: streamDrafts, ...streamUsage } = last.usage!;
    const { completion_tokens_details: fullDrafts, ...fullUsage } = full.usage!;
    assert.deepEqual(streamUsage, fullUsage);
    for (const d of [streamDrafts, fullDrafts]) {
      assert.ok(d && (d.accepted_prediction_tokens ?? 0) <= 12, 'accepted drafts are among the completion tokens');
    }
    for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null, 'other chunks carry usage: null');
    const withChoice = chunks.filter((c) => c.choices.length > 0);
    const finishes = withChoice.map((c) => c.choices[0].finish_reason);
    assert.deepEqual(finishes.slice(0, -1).filter((f) => f !== null), [], 'only the last choice chunk finishes');
    assert.equal(finishes.at(-1), 'length');
    const text = withChoice.map((c) => c.choices[0].delta.content ?? '').join('');
    assert.equal(text, full.choices[0].message.content);
  });

  test('completions endpoint, and max_tokens above the remaining context is clamped with finish_reason length', async () => {
    const res = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 3, temperature: 0 });
    assert.equal(res.object, 'text_completion');
    assert.equal(res.choices[0].finish_reason, 'length');
    assert.equal(res.usage?.completion_tokens, 3);

    // Build a prompt a few tokens short of the context: measure tokens per repetition first.
    const ctx = stack.modelInfo.contextLength;
    const promptTokens = async (n: number) =>
      (await client.completions.create({ model, prompt: 'hello world '.repeat(n), max_tokens: 1 })).usage!.prompt_tokens;
    const p10 = await promptTokens(10);
    const p20 = await promptTokens(20);
    const perRep = (p20 - p10) / 10;
    const n = Math.floor((ctx - 5 - (p10 - 10 * perRep)) / perRep);
    const prompt = 'hello world '.repeat(n);
    const clamped = await client.completions.create({ model, prompt, max_tokens: 100_000, temperature: 0 });
    const remaining = ctx - clamped.usage!.prompt_tokens;
    assert.ok(remaining >= 1 && remaining <= 5 + perRep, `remaining ${remaining}`);
    assert.equal(clamped.usage!.completion_tokens, remaining);
    assert.equal(clamped.choices[0].finish_reason, 'length');
  });

  test('completions stream: text chunks concatenate to the non-stream text; one usage chunk', async () => {
    const params = { model, prompt: 'The cache said', max_tokens: 6, temperature: 0 } as const;
    const full = await client.completions.create(params);
    const stream = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usageChunks = 0;
    let finish: string | null = null;
    for await (const c of stream) {
      assert.equal(c.object, 'text_completion');
      if (c.usage) usageChunks++;
      text += c.choices[0]?.text ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, full.choices[0].text);
    assert.equal(usageChunks, 1);
    assert.equal(finish, 'length');
  });

  test('unknown harmless fields are ignored', async () => {
    const res = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 2,
      store: false,
      metadata: { a: 'b' },
      user: 'someone',
      parallel_tool_calls: true,
      prompt_cache_key: 'x',
    } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    assert.equal(res.usage?.completion_tokens, 2);
  });

  test('4 identical seeded requests in parallel give identical output (and equal the single run)', async () => {
    const params = { model, messages, max_tokens: 8, temperature: 1, seed: 99 } as const;
    const single = await client.chat.completions.create(params);
    const four = await Promise.all([0, 1, 2, 3].map(() => client.chat.completions.create(params)));
    for (const r of four) assert.equal(r.choices[0].message.content, single.choices[0].message.content);
    // and a different seed gives a different sample (guards against the seed being ignored)
    const other = await client.chat.completions.create({ ...params, seed: 100 });
    assert.notEqual(other.choices[0].message.content, single.choices[0].message.content);
  });

  test('successful deterministic generations reach responseCache.set; the key carries prompt ids and sampling', async () => {
    const before = cacheSets.length;
    await client.chat.completions.create({ model, messages, max_tokens: 2, temperature: 0 });
    assert.equal(cacheSets.length, before + 1);
    const key = cacheSets.at(-1)!;
    assert.equal(key.route, 'chat');
    assert.equal(key.modelFingerprint, stack.modelInfo.fingerprint);
    assert.equal(key.sampling.maxTokens, 2);
    assert.ok(key.promptIds.length > 5);
    // non-deterministic requests never touch the cache
    await client.chat.completions.create({ model, messages, max_tokens: 2, temperature: 0.7 });
    assert.equal(cacheSets.length, before + 1);
  });
});

// The random-weight model never writes `<tool_call>` on its own, so the model output for these
// requests comes from the response-cache seam (a canned generation text, `toolCache` above). What
// is exercised for real: request validation of tools/tool_choice, rendering the tools into the real
// Qwen3 chat template (the cache key's prompt ids), the real engine-text tool-call parser, and the
// server's conversion into `message.tool_calls` / streamed `delta.tool_calls` as the SDK reads them.
describe('openai client: tool calls', () => {
  const tools: OpenAI.Chat.ChatCompletionTool[] = [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Weather for a city',
        parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] },
      },
    },
  ];

  test('non-stream: message.tool_calls and finish_reason tool_calls', async () => {
    const { data: res, response } = await client.chat.completions.create({ model, messages, tools, temperature: 0, max_tokens: 64 }).withResponse();
    assert.equal(response.headers.get('x-mlxbar-cache'), 'hit');
    assert.ok(response.headers.get('x-request-id'));
    const choice = res.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, 'Let me check.');
    assert.equal(choice.message.tool_calls?.length, 1);
    const call = choice.message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    assert.equal(call.type, 'function');
    assert.match(call.id, /^call_/);
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris', unit: 'c' });
    assert.equal(res.usage?.prompt_tokens_details?.cached_tokens, res.usage?.prompt_tokens);
  });

  test('stream: first fragment has index/id/type/name, later fragments carry arguments; SDK accumulates', async () => {
    const raw = await client.chat.completions.create({ model, messages, tools, temperature: 0, stream: true });
    const fragments: OpenAI.Chat.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    let finish: string | null = null;
    for await (const c of raw) {
      for (const tc of c.choices[0]?.delta.tool_calls ?? []) fragments.push(tc);
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(finish, 'tool_calls');
    assert.ok(fragments.length >= 2);
    assert.equal(fragments[0].index, 0);
    assert.match(fragments[0].id ?? '', /^call_/);
    assert.equal(fragments[0].type, 'function');
    assert.equal(fragments[0].function?.name, 'get_weather');
    assert.equal(fragments[0].function?.arguments, '');
    for (const f of fragments.slice(1)) {
      assert.equal(f.index, 0);
      assert.equal(f.id, undefined);
    }
    const args = fragments.map((f) => f.function?.arguments ?? '').join('');
    assert.deepEqual(JSON.parse(args), { city: 'Paris', unit: 'c' });

    // The SDK's stream helper accumulates the same thing.
    const helper = client.chat.completions.stream({ model, messages, tools, temperature: 0 });
    const final = await helper.finalChatCompletion();
    const call = final.choices[0].message.tool_calls?.[0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris', unit: 'c' });
  });

  test('tool_choice none: tools are not offered and output is plain content (engine runs)', async () => {
    const res = await client.chat.completions.create({ model, messages, tools, tool_choice: 'none', temperature: 0, max_tokens: 3 });
    assert.equal(res.choices[0].finish_reason, 'length');
    assert.equal(res.choices[0].message.tool_calls, undefined);
  });

  test('tool_choice naming an unknown function → 400 param tool_choice', async () => {
    await assert.rejects(
      client.chat.completions.create({ model, messages, tools, tool_choice: { type: 'function', function: { name: 'nope' } } }),
      (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'tool_choice',
    );
  });
});

describe('openai client: errors raise APIError subclasses', () => {
  test('unknown model → NotFoundError model_not_found', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: '../../etc/passwd', messages }),
      (err: unknown) => err instanceof OpenAI.NotFoundError && err.code === 'model_not_found' && err.param === 'model',
    );
  });

  test('out-of-range parameters → BadRequestError with param', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ temperature: 5 }, 'temperature'],
      [{ top_p: 0 }, 'top_p'],
      [{ n: 2 }, 'n'],
      [{ logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '(a)\\1' } } } }, 'response_format'],
      [{ max_tokens: 0 }, 'max_tokens'],
      [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
      [{ stream_options: { include_usage: true } }, 'stream_options'],
    ];
    for (const [extra, param] of cases) {
      await assert.rejects(
        client.chat.completions.create({ model, messages, ...extra } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming),
        (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === param,
        `expected 400 param ${param} for ${JSON.stringify(extra)}`,
      );
    }
  });

  test('prompt over the context → 400 context_length_exceeded, also with stream: true', async () => {
    const long = 'hello world '.repeat(Math.ceil(stack.modelInfo.contextLength / 2) + 50);
    for (const stream of [false, true]) {
      await assert.rejects(
        (async () => {
          const r = await client.chat.completions.create({ model, messages: [{ role: 'user', content: long }], stream });
          if (stream) for await (const _ of r as AsyncIterable<unknown>) void _;
        })(),
        (err: unknown) => err instanceof OpenAI.BadRequestError && err.code === 'context_length_exceeded' && err.status === 400,
      );
    }
  });
});
