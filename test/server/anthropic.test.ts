// POST /v1/messages (+ count_tokens) through the official @anthropic-ai/sdk against the real server
// and the real MLX engine on a tiny random-weight Qwen3-layout model (real Qwen3 tokenizer and chat
// template). Random weights write gibberish, so:
// - forced tool calls (tool_choice any/tool) are used for the tools round trip: constrained decoding
//   guarantees a schema-valid call whatever the weights;
// - the reasoning split needs text that starts with `<think>`: it comes through the response-cache
//   seam (a deterministic request whose `get` returns a canned generation, replayed through the same
//   writer as a live one — the same seam test/server/openai-client.test.ts uses for tool calls).
//   The split of tags cut across deltas is covered by test/engine/text-reasoning.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { Ajv } from 'ajv';
import { LEAK_RE, postJson, rawRequest, startStack, type TestStack } from './helpers.ts';
import { createServer, type MlxBarServer } from '../../main/server/index.ts';
import type { CachedGeneration, ResponseCacheKey } from '../../main/server/hooks.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

let stack: TestStack;
let client: Anthropic;
let model: string;

// Response-cache seam: a miss unless a test sets `canned`; every key asked for is recorded so a
// test can read the exact prompt the server rendered.
let canned: string | null = null;
const askedKeys: ResponseCacheKey[] = [];
const cannedCache = {
  get(key: ResponseCacheKey): CachedGeneration | null {
    askedKeys.push(key);
    if (canned === null) return null;
    return { text: canned, finishReason: 'stop', stopReason: 'eos', promptTokens: key.promptIds.length, completionTokens: 11 };
  },
  set() {},
};

before(async () => {
  // A longer context than the default tiny model so the Claude Code-sized prompt fits.
  stack = await startStack({ spec: { family: 'qwen3', maxPositionEmbeddings: 32768 }, hooks: { responseCache: cannedCache } });
  model = stack.modelInfo.id;
  client = new Anthropic({ baseURL: stack.url, apiKey: 'unused', maxRetries: 0, timeout: 180_000 });
});
after(async () => {
  await stack?.close();
});

/** Parses an Anthropic SSE body into [event name, data] pairs (pings included). */
function parseNamedSse(body: string): { event: string; data: Record<string, unknown> }[] {
  const out: { event: string; data: Record<string, unknown> }[] = [];
  for (const frame of body.split('\n\n')) {
    if (!frame.trim()) continue;
    let event = '';
    let data = '';
    for (const line of frame.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data += line.slice(6);
      else assert.fail(`unexpected SSE line ${JSON.stringify(line)}`);
    }
    const parsed = JSON.parse(data) as Record<string, unknown>;
    assert.equal(parsed.type, event, 'event name equals data.type');
    out.push({ event, data: parsed });
  }
  return out;
}

/**
 * Anthropic's documented order: message_start, then per block start → deltas → stop (indexes
 * 0,1,2… in order), then message_delta and message_stop last. `ping` events may come anywhere —
 * also before message_start: they are our keep-alives while the request waits in the queue or its
 * prompt is prefilled (the SDKs skip them; message_start waits for the prompt's cache numbers).
 */
function assertEventOrder(all: { event: string; data: Record<string, unknown> }[]): void {
  const events = all.filter((e) => e.event !== 'ping');
  const names = events.map((e) => e.event);
  assert.equal(names[0], 'message_start');
  assert.deepEqual(names.slice(-2), ['message_delta', 'message_stop']);
  let open: number | null = null;
  let next = 0;
  for (const e of events.slice(1, -2)) {
    const index = e.data.index as number;
    if (e.event === 'content_block_start') {
      assert.equal(open, null, 'a block starts only after the previous one stopped');
      assert.equal(index, next, 'block indexes are dense and in order');
      open = index;
    } else if (e.event === 'content_block_delta') {
      assert.equal(index, open, 'deltas belong to the open block');
    } else if (e.event === 'content_block_stop') {
      assert.equal(index, open);
      open = null;
      next++;
    } else {
      assert.fail(`unexpected event ${e.event} inside the message`);
    }
  }
  assert.equal(open, null, 'every block is stopped before message_delta');
}

/**
 * messages.create with the sampling fields the issue lists (temperature, top_k, top_p): this SDK
 * version's types no longer declare them, the API and Claude Code still send them.
 */
const create = (params: Record<string, unknown>): Promise<Anthropic.Message> =>
  client.messages.create(params as unknown as Anthropic.MessageCreateParamsNonStreaming);

const HELLO: Anthropic.MessageParam[] = [{ role: 'user', content: 'Write a haiku about caches.' }];

describe('anthropic sdk: messages', () => {
  test('non-stream message has the Anthropic shape and exact usage', async () => {
    const msg = await create({ model, max_tokens: 6, temperature: 0, system: 'You are terse.', messages: HELLO });
    assert.match(msg.id, /^msg_[0-9a-f]{24}$/);
    assert.equal(msg.type, 'message');
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.model, model);
    assert.ok(['end_turn', 'max_tokens'].includes(msg.stop_reason!), String(msg.stop_reason));
    assert.equal(msg.stop_sequence, null);
    for (const b of msg.content) assert.equal(b.type, 'text');
    assert.ok(msg.usage.output_tokens >= 1 && msg.usage.output_tokens <= 6);
    const counted = await client.messages.countTokens({ model, system: 'You are terse.', messages: HELLO });
    // Anthropic's input_tokens excludes what the cache served: together they are the whole prompt.
    assert.equal(msg.usage.input_tokens + (msg.usage.cache_read_input_tokens ?? 0), counted.input_tokens);
    assert.equal(msg.usage.cache_creation_input_tokens, 0);
  });

  test('stream: exact event order, and the streamed text equals the non-stream text', async () => {
    const body = { model, max_tokens: 8, temperature: 0, messages: [{ role: 'user', content: 'Name three colors.' }] };
    const res = await postJson(stack.port, '/v1/messages', { ...body, stream: true }, { 'anthropic-version': '2023-06-01' });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    const events = parseNamedSse(res.body);
    assertEventOrder(events);
    const start = events.find((e) => e.event === 'message_start')!.data.message as Record<string, unknown>;
    assert.match(String(start.id), /^msg_/);
    assert.deepEqual(start.content, []);
    assert.equal(start.stop_reason, null);
    assert.ok(events.some((e) => e.event === 'ping'), 'a ping event is sent');
    const streamed = events
      .filter((e) => e.event === 'content_block_delta')
      .map((e) => {
        const d = e.data.delta as { type: string; text: string };
        assert.equal(d.type, 'text_delta');
        return d.text;
      })
      .join('');
    const end = events.at(-2)!.data as { delta: { stop_reason: string }; usage: { output_tokens: number } };
    assert.ok(['end_turn', 'max_tokens'].includes(end.delta.stop_reason));
    assert.ok(end.usage.output_tokens >= 1);

    const whole = await client.messages.create(body as Anthropic.MessageCreateParamsNonStreaming);
    assert.equal(whole.content.map((b) => (b.type === 'text' ? b.text : '')).join(''), streamed);
    assert.equal(whole.stop_reason, end.delta.stop_reason);

    // The SDK's own stream helper accumulates the same message.
    const final = await client.messages.stream(body as Anthropic.MessageStreamParams).finalMessage();
    assert.equal(final.content.map((b) => (b.type === 'text' ? b.text : '')).join(''), streamed);
    assert.equal(final.usage.output_tokens, whole.usage.output_tokens);
  });

  test('stop_sequences: stop_reason stop_sequence names the sequence that matched', async () => {
    // Find a piece of what the model writes greedily, then ask it to stop there.
    const free = await create({ model, max_tokens: 12, temperature: 0, messages: HELLO });
    const text = free.content.map((b) => (b.type === 'text' ? b.text : '')).join('');
    const cut = text.slice(Math.floor(text.length / 2)).trim().slice(0, 3);
    assert.ok(cut.length > 0, `the model wrote some text: ${JSON.stringify(text)}`);
    const msg = await create({ model, max_tokens: 12, temperature: 0, messages: HELLO, stop_sequences: ['\u0000never', cut] });
    assert.equal(msg.stop_reason, 'stop_sequence');
    assert.equal(msg.stop_sequence, cut);
  });
});

const WEATHER_SCHEMA: Anthropic.Tool.InputSchema = {
  type: 'object',
  properties: {
    city: { type: 'string', minLength: 1, maxLength: 12 },
    unit: { enum: ['c', 'f'] },
    // Bounded: an unbounded integer lets a random-weight model write digits until max_tokens, and a
    // call cut by max_tokens is (rightly) not a complete tool_use — the test would flake on sampling.
    days: { type: 'integer', minimum: 1, maximum: 16 },
  },
  required: ['city', 'unit'],
  additionalProperties: false,
};
const TOOLS: Anthropic.Tool[] = [
  { name: 'get_weather', description: 'Weather for a city', input_schema: WEATHER_SCHEMA },
  {
    name: 'get_time',
    description: 'Local time in a city',
    input_schema: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'], additionalProperties: false },
  },
];
const ajv = new Ajv({ strict: false });
const validWeather = ajv.compile(WEATHER_SCHEMA);

describe('anthropic sdk: tools', () => {
  test('round trip: forced tool_use (schema-valid input) → tool_result → answer', async () => {
    const ask: Anthropic.MessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const first = await create({ model, max_tokens: 200, tools: TOOLS, tool_choice: { type: 'tool', name: 'get_weather' }, messages: ask });
    assert.equal(first.stop_reason, 'tool_use');
    const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use');
    assert.ok(use, JSON.stringify(first.content));
    assert.match(use.id, /^toolu_[A-Za-z0-9]{24}$/);
    assert.equal(use.name, 'get_weather');
    assert.ok(validWeather(use.input), `${ajv.errorsText(validWeather.errors)}: ${JSON.stringify(use.input)}`);

    askedKeys.length = 0;
    const second = await create({
      model,
      max_tokens: 6,
      temperature: 0,
      tools: TOOLS,
      messages: [
        ...ask,
        { role: 'assistant', content: first.content as Anthropic.ContentBlockParam[] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'Sunny, 21 C' }] },
      ],
    });
    assert.ok(['end_turn', 'max_tokens', 'tool_use'].includes(second.stop_reason!));
    // The model saw its own call and the result, in the template's own markup.
    const prompt = stack.text.decode(askedKeys.at(-1)!.promptIds);
    // (The template writes the input with Python's json separators: `{"city": "…", "unit": …}`.)
    const input = use.input as { city: string; unit: string };
    assert.ok(prompt.includes(`<tool_call>\n{"name": "get_weather", "arguments": {"city": ${JSON.stringify(input.city)}, "unit": "${input.unit}"`), prompt.slice(-600));
    assert.ok(prompt.includes('<tool_response>\nSunny, 21 C\n</tool_response>'), prompt.slice(-400));
    assert.ok(prompt.includes('"name": "get_time"'), 'the tools are rendered into the prompt');
  });

  test('tool_choice any, streamed: tool_use block with input_json_delta, stop_reason tool_use', async () => {
    const res = await postJson(stack.port, '/v1/messages', {
      model,
      max_tokens: 200,
      stream: true,
      tools: TOOLS,
      tool_choice: { type: 'any' },
      messages: [{ role: 'user', content: 'Weather or time in Oslo?' }],
    });
    assert.equal(res.status, 200);
    const events = parseNamedSse(res.body);
    assertEventOrder(events);
    const starts = events.filter((e) => e.event === 'content_block_start').map((e) => e.data.content_block as Record<string, unknown>);
    const tool = starts.find((b) => b.type === 'tool_use');
    assert.ok(tool, JSON.stringify(starts));
    assert.deepEqual(tool.input, {});
    assert.ok(['get_weather', 'get_time'].includes(tool.name as string));
    const json = events
      .filter((e) => e.event === 'content_block_delta' && (e.data.delta as { type: string }).type === 'input_json_delta')
      .map((e) => (e.data.delta as { partial_json: string }).partial_json)
      .join('');
    const input = JSON.parse(json) as unknown;
    const schema = TOOLS.find((t) => t.name === tool.name)!.input_schema;
    assert.ok(ajv.validate(schema, input), `${ajv.errorsText()}: ${json}`);
    assert.equal((events.at(-2)!.data.delta as { stop_reason: string }).stop_reason, 'tool_use');

    // The SDK's stream helper assembles the same input object.
    const final = await client.messages
      .stream({ model, max_tokens: 200, tools: TOOLS, tool_choice: { type: 'any' }, messages: [{ role: 'user', content: 'Oslo?' }] })
      .finalMessage();
    const use = final.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!;
    assert.ok(ajv.validate(TOOLS.find((t) => t.name === use.name)!.input_schema, use.input), JSON.stringify(use.input));
  });

  test('tool_choice none: tools are not rendered and no tool_use comes back', async () => {
    askedKeys.length = 0;
    const msg = await create({ model, max_tokens: 4, temperature: 0, tools: TOOLS, tool_choice: { type: 'none' }, messages: HELLO });
    assert.ok(msg.content.every((b) => b.type === 'text'));
    assert.ok(!stack.text.decode(askedKeys.at(-1)!.promptIds).includes('get_weather'));
  });
});

describe('anthropic: errors in Anthropic shape, sanitized', () => {
  const cases: { name: string; body: unknown; status: number; type: string; mention: RegExp }[] = [
    { name: 'missing max_tokens', body: { model: 'x', messages: [{ role: 'user', content: 'hi' }] }, status: 400, type: 'invalid_request_error', mention: /max_tokens/ },
    { name: 'image block', body: { max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] }] }, status: 400, type: 'invalid_request_error', mention: /image/ },
    { name: 'bad role', body: { max_tokens: 5, messages: [{ role: 'robot', content: 'x' }] }, status: 400, type: 'invalid_request_error', mention: /role/ },
    { name: 'temperature out of range', body: { max_tokens: 5, temperature: 1.5, messages: [{ role: 'user', content: 'x' }] }, status: 400, type: 'invalid_request_error', mention: /temperature/ },
    { name: 'forced tool not offered', body: { max_tokens: 5, tools: [{ name: 'a', input_schema: { type: 'object' } }], tool_choice: { type: 'tool', name: 'b' }, messages: [{ role: 'user', content: 'x' }] }, status: 400, type: 'invalid_request_error', mention: /tool_choice/ },
    { name: 'server tool', body: { max_tokens: 5, tools: [{ type: 'web_search_20250305', name: 'web_search' }], messages: [{ role: 'user', content: 'x' }] }, status: 400, type: 'invalid_request_error', mention: /server tools/ },
    { name: 'thinking with a forced tool', body: { max_tokens: 5, thinking: { type: 'enabled', budget_tokens: 1024 }, tools: [{ name: 'a', input_schema: { type: 'object' } }], tool_choice: { type: 'any' }, messages: [{ role: 'user', content: 'x' }] }, status: 400, type: 'invalid_request_error', mention: /Thinking/ },
    { name: 'unknown model', body: { model: '/etc/passwd-claude', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }, status: 404, type: 'not_found_error', mention: /does not exist/ },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const body = { model, ...(c.body as object) };
      const res = await postJson(stack.port, '/v1/messages', body);
      assert.equal(res.status, c.status, res.body);
      const parsed = JSON.parse(res.body) as { type: string; error: { type: string; message: string }; request_id: string };
      assert.equal(parsed.type, 'error');
      assert.equal(parsed.error.type, c.type);
      assert.match(parsed.error.message, c.mention);
      assert.equal(parsed.request_id, res.headers['x-request-id']);
      assert.doesNotMatch(res.body, LEAK_RE);
    });
  }

  test('the SDK raises its own error classes with the server message', async () => {
    await assert.rejects(
      create({ model, max_tokens: 5, temperature: 3, messages: HELLO }),
      (err: unknown) => err instanceof Anthropic.BadRequestError && err.status === 400 && /temperature/.test(err.message) && (err.error as { error: { type: string } }).error.type === 'invalid_request_error',
    );
    await assert.rejects(create({ model: 'claude-sonnet-4-5', max_tokens: 5, messages: HELLO }), (err: unknown) => err instanceof Anthropic.NotFoundError);
  });

  test('malformed JSON and an unknown method also answer in Anthropic shape', async () => {
    const bad = await rawRequest(stack.port, { method: 'POST', path: '/v1/messages', headers: { 'content-type': 'application/json' }, body: '{"model":' });
    assert.equal(bad.status, 400);
    assert.equal(JSON.parse(bad.body).error.type, 'invalid_request_error');
    const get = await rawRequest(stack.port, { method: 'GET', path: '/v1/messages' });
    assert.equal(get.status, 405);
    assert.equal(JSON.parse(get.body).type, 'error');
    // Other routes keep OpenAI's shape.
    const openai = await postJson(stack.port, '/v1/chat/completions', { model, messages: [] });
    assert.equal(JSON.parse(openai.body).error.code, 'invalid_value');
  });
});

describe('anthropic: auth with a key (x-api-key or Bearer)', () => {
  let keyed: MlxBarServer;
  let url: string;
  before(async () => {
    keyed = createServer({ engine: stack.engine, text: stack.text, modelInfo: stack.modelInfo }, { port: 0, apiKey: 'sk-local-123' });
    url = (await keyed.listen()).url;
  });
  after(async () => {
    await keyed?.close(500);
  });

  test('x-api-key (SDK default for Claude Code ANTHROPIC_API_KEY) and Bearer (ANTHROPIC_AUTH_TOKEN) are accepted', async () => {
    const viaX = new Anthropic({ baseURL: url, apiKey: null, authToken: null, defaultHeaders: { 'x-api-key': 'sk-local-123' }, maxRetries: 0 });
    const a = await viaX.messages.countTokens({ model, messages: HELLO });
    assert.ok(a.input_tokens > 0);
    const viaBearer = new Anthropic({ baseURL: url, authToken: 'sk-local-123', apiKey: null, maxRetries: 0 });
    const b = await viaBearer.messages.countTokens({ model, messages: HELLO });
    assert.equal(b.input_tokens, a.input_tokens);
  });

  test('a wrong key is a 401 authentication_error in Anthropic shape', async () => {
    const wrong = new Anthropic({ baseURL: url, apiKey: null, authToken: null, defaultHeaders: { 'x-api-key': 'nope' }, maxRetries: 0 });
    await assert.rejects(wrong.messages.create({ model, max_tokens: 2, messages: HELLO }), (err: unknown) => {
      assert.ok(err instanceof Anthropic.AuthenticationError, String(err));
      assert.equal((err.error as { type: string; error: { type: string } }).error.type, 'authentication_error');
      return true;
    });
  });
});

describe('context limit (contextLength resolved by the hooks.contextLimit seam): the clear 400 in each API\'s shape', () => {
  let small: MlxBarServer;
  let port: number;
  before(async () => {
    small = createServer({ engine: stack.engine, text: stack.text, modelInfo: stack.modelInfo, hooks: { contextLimit: () => 64 } }, { port: 0 });
    port = (await small.listen()).port;
  });
  after(async () => {
    await small?.close(500);
  });

  test('/v1/models shows the limit; over it: Anthropic invalid_request_error, OpenAI context_length_exceeded; under it max_tokens is clamped', async () => {
    const models = JSON.parse((await rawRequest(port, { path: '/v1/models' })).body) as { data: { context_length: number; max_context_length: number }[] };
    assert.equal(models.data[0]!.context_length, 64);
    assert.equal(models.data[0]!.max_context_length, 32768);
    const long = 'word '.repeat(80);
    const a = await postJson(port, '/v1/messages', { model, max_tokens: 5, messages: [{ role: 'user', content: long }] });
    assert.equal(a.status, 400);
    const ab = JSON.parse(a.body) as { type: string; error: { type: string; message: string } };
    assert.equal(ab.type, 'error');
    assert.equal(ab.error.type, 'invalid_request_error');
    assert.match(ab.error.message, /maximum context length is 64 tokens/);
    const o = await postJson(port, '/v1/chat/completions', { model, max_tokens: 5, messages: [{ role: 'user', content: long }] });
    assert.equal(o.status, 400);
    assert.equal((JSON.parse(o.body) as { error: { code: string } }).error.code, 'context_length_exceeded');
    const ok = await postJson(port, '/v1/messages', { model, max_tokens: 1000, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(ok.status, 200, ok.body);
    const usage = (JSON.parse(ok.body) as { usage: { input_tokens: number; cache_read_input_tokens: number; output_tokens: number } }).usage;
    assert.ok(usage.input_tokens + usage.cache_read_input_tokens + usage.output_tokens <= 64, JSON.stringify(usage));
  });
});

describe('anthropic: prefix cache reported as cache_read_input_tokens', () => {
  test('a long request repeated: the second call reads the prompt from the prefix cache', async () => {
    const system: Anthropic.TextBlockParam[] = [
      { type: 'text', text: 'You are a careful assistant for a large code base. '.repeat(60), cache_control: { type: 'ephemeral' } },
    ];
    const params = { model, max_tokens: 3, system, messages: [{ role: 'user' as const, content: 'Summarize the rules.' }] };
    const first = await client.messages.create(params);
    const second = await client.messages.create(params);
    const total = first.usage.input_tokens + (first.usage.cache_read_input_tokens ?? 0);
    assert.ok(total > 500, `a long prompt (${total} tokens)`);
    assert.ok((second.usage.cache_read_input_tokens ?? 0) > 0.9 * total, JSON.stringify(second.usage));
    assert.equal(second.usage.input_tokens + (second.usage.cache_read_input_tokens ?? 0), total);
    // Streamed: message_start already carries the cache numbers.
    const res = await postJson(stack.port, '/v1/messages', { ...params, stream: true });
    const startUsage = (parseNamedSse(res.body).find((e) => e.event === 'message_start')!.data.message as { usage: { cache_read_input_tokens: number; input_tokens: number } }).usage;
    assert.ok(startUsage.cache_read_input_tokens > 0.9 * total, JSON.stringify(startUsage));
    assert.equal(startUsage.cache_read_input_tokens + startUsage.input_tokens, total);
  });
});

describe('reasoning split (template with <think>; canned generation through the response-cache seam)', () => {
  const THINK_TEXT = '<think>\nThe user asks 2+2. That is 4.\n</think>\n\nThe answer is 4.';
  const ask: Anthropic.MessageParam[] = [{ role: 'user', content: 'What is 2+2?' }];
  const withCanned = async <T>(fn: () => Promise<T>): Promise<T> => {
    canned = THINK_TEXT;
    askedKeys.length = 0;
    try {
      return await fn();
    } finally {
      canned = null;
    }
  };

  test('anthropic: thinking requested → thinking block then text block (non-stream and stream)', async () => {
    const msg = await withCanned(() => create({ model, max_tokens: 50, temperature: 0, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: ask }));
    assert.deepEqual(
      msg.content.map((b) => [b.type, b.type === 'thinking' ? b.thinking : b.type === 'text' ? b.text : '']),
      [
        ['thinking', '\nThe user asks 2+2. That is 4.\n'],
        ['text', 'The answer is 4.'],
      ],
    );
    // Thinking on: the template's own (thinking) generation prompt, not the empty think block.
    assert.ok(stack.text.decode(askedKeys.at(-1)!.promptIds).endsWith('<|im_start|>assistant\n'));

    const res = await withCanned(() =>
      postJson(stack.port, '/v1/messages', { model, max_tokens: 50, temperature: 0, stream: true, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: ask }),
    );
    const events = parseNamedSse(res.body);
    assertEventOrder(events);
    const blocks = events.filter((e) => e.event === 'content_block_start').map((e) => (e.data.content_block as { type: string }).type);
    assert.deepEqual(blocks, ['thinking', 'text']);
    const deltas = events.filter((e) => e.event === 'content_block_delta').map((e) => e.data.delta as Record<string, string>);
    assert.equal(deltas.filter((d) => d.type === 'thinking_delta').map((d) => d.thinking).join(''), '\nThe user asks 2+2. That is 4.\n');
    assert.equal(deltas.filter((d) => d.type === 'text_delta').map((d) => d.text).join(''), 'The answer is 4.');
  });

  test('anthropic: thinking absent → no thinking block, and the non-thinking prompt is rendered', async () => {
    const msg = await withCanned(() => create({ model, max_tokens: 50, temperature: 0, messages: ask }));
    assert.deepEqual(msg.content, [{ type: 'text', text: 'The answer is 4.', citations: null }]);
    assert.ok(stack.text.decode(askedKeys.at(-1)!.promptIds).endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n'));
  });

  test('openai chat: reasoning_content (non-stream and stream deltas); reasoning_format none keeps it in content', async () => {
    const oa = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is 2+2?' }];
    const res = await withCanned(() => oa.chat.completions.create({ model, messages, max_tokens: 50, temperature: 0 }));
    const m = res.choices[0]!.message as OpenAI.Chat.ChatCompletionMessage & { reasoning_content?: string };
    assert.equal(m.content, 'The answer is 4.');
    assert.equal(m.reasoning_content, '\nThe user asks 2+2. That is 4.\n');

    const stream = await withCanned(() => oa.chat.completions.create({ model, messages, max_tokens: 50, temperature: 0, stream: true }));
    let reasoning = '';
    let content = '';
    let sawContentBeforeReasoningEnded = false;
    for await (const chunk of stream) {
      const d = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
      if (d?.reasoning_content) {
        if (content) sawContentBeforeReasoningEnded = true;
        reasoning += d.reasoning_content;
      }
      if (d?.content) content += d.content;
    }
    assert.equal(reasoning, '\nThe user asks 2+2. That is 4.\n');
    assert.equal(content, 'The answer is 4.');
    assert.equal(sawContentBeforeReasoningEnded, false);

    const raw = await withCanned(() =>
      oa.chat.completions.create({ model, messages, max_tokens: 50, temperature: 0, reasoning_format: 'none' } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming),
    );
    assert.equal(raw.choices[0]!.message.content, THINK_TEXT);
    assert.equal((raw.choices[0]!.message as { reasoning_content?: string }).reasoning_content, undefined);
  });
});

describe('Claude Code-shaped request replayed from a recorded fixture', () => {
  test('large system prompt as cached blocks, 17 tools, stream, beta headers: a well-formed event stream', async () => {
    const fx = JSON.parse(readFileSync(path.join(here, 'fixtures/claude-code-messages.json'), 'utf8')) as {
      path: string;
      headers: Record<string, string>;
      body: Record<string, unknown>;
    };
    assert.ok((fx.body.tools as unknown[]).length >= 15);
    const body = { ...fx.body, model };
    const counted = await postJson(stack.port, '/v1/messages/count_tokens', { model, system: fx.body.system, tools: fx.body.tools, messages: fx.body.messages });
    assert.equal(counted.status, 200, counted.body);
    const promptTokens = (JSON.parse(counted.body) as { input_tokens: number }).input_tokens;
    assert.ok(promptTokens > 8192, `bigger than the old 8,192 default context (${promptTokens} tokens)`);

    const res = await rawRequest(stack.port, {
      method: 'POST',
      path: fx.path,
      headers: { ...fx.headers, 'content-type': 'application/json', 'x-api-key': 'sk-ignored-without-a-server-key' },
      body: JSON.stringify({ ...body, max_tokens: 16 }),
    });
    assert.equal(res.status, 200, res.body.slice(0, 500));
    const events = parseNamedSse(res.body);
    assertEventOrder(events);
    const start = events.find((e) => e.event === 'message_start')!.data.message as { usage: { input_tokens: number; cache_read_input_tokens: number } };
    assert.equal(start.usage.input_tokens + start.usage.cache_read_input_tokens, promptTokens);
    const end = events.at(-2)!.data as { delta: { stop_reason: string }; usage: { output_tokens: number } };
    assert.ok(['end_turn', 'max_tokens', 'tool_use'].includes(end.delta.stop_reason));
    assert.ok(end.usage.output_tokens >= 1 && end.usage.output_tokens <= 16);

    // The same request again (Claude Code resends the whole conversation): served from the prefix cache.
    const again = await rawRequest(stack.port, { method: 'POST', path: fx.path, headers: { ...fx.headers, 'content-type': 'application/json' }, body: JSON.stringify({ ...body, max_tokens: 4 }) });
    const usage2 = (parseNamedSse(again.body).find((e) => e.event === 'message_start')!.data.message as { usage: { cache_read_input_tokens: number } }).usage;
    assert.ok(usage2.cache_read_input_tokens > 0.9 * promptTokens, JSON.stringify(usage2));
  });
});
