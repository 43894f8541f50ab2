// POST /v1/responses through the real server, the real engine process and the official `openai`
// client (`client.responses.*`, what Codex CLI and the AI SDK's default OpenAI provider speak), on a
// tiny RANDOM-weight model with the real Qwen3 tokenizer and chat template. A random model writes
// gibberish and practically never calls a tool by itself, so tool calls are forced (tool_choice),
// which the constrained decoder guarantees; JSON validity holds only because decoding enforced it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ajv } from 'ajv';
import { LEAK_RE, postJson, startStack, type TestStack } from './helpers.ts';

let stack: TestStack;
let client: OpenAI;
let model: string;

before(async () => {
  stack = await startStack();
  model = stack.modelInfo.id;
  client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 180_000 });
});
after(async () => {
  await stack?.close();
});

const WEATHER = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['c', 'f'] } },
  required: ['city', 'unit'],
  additionalProperties: false,
} as const;
const tools: OpenAI.Responses.FunctionTool[] = [{ type: 'function', name: 'get_weather', description: 'Weather of a city', parameters: WEATHER, strict: true }];

describe('responses.create', { timeout: 600_000 }, () => {
  test('non-stream: a Response with one message item, output_text, usage and the request echoed', async () => {
    const r = await client.responses.create({ model, input: 'Say hello.', instructions: 'Be brief.', max_output_tokens: 6, temperature: 0, metadata: { run: 't1' } });
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_/);
    assert.equal(r.model, model);
    assert.ok(r.status === 'completed' || r.status === 'incomplete', r.status);
    assert.equal(r.instructions, 'Be brief.');
    assert.deepEqual(r.metadata, { run: 't1' });
    assert.equal(r.max_output_tokens, 6);
    const msg = r.output.find((o) => o.type === 'message');
    assert.ok(msg && msg.type === 'message');
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.content[0]!.type, 'output_text');
    assert.equal(r.output_text, msg.content.map((c) => (c.type === 'output_text' ? c.text : '')).join(''));
    assert.ok(r.usage);
    assert.ok(r.usage.input_tokens > 5);
    assert.ok(r.usage.output_tokens >= 1 && r.usage.output_tokens <= 6);
    assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
    assert.equal(typeof r.usage.input_tokens_details.cached_tokens, 'number');
    if (r.usage.output_tokens === 6) {
      assert.equal(r.status, 'incomplete');
      assert.equal(r.incomplete_details?.reason, 'max_output_tokens');
    }
  });

  test('stream: the documented event order, consecutive sequence numbers, deltas that add up to the final text', async () => {
    const stream = await client.responses.create({ model, input: 'Count.', max_output_tokens: 8, temperature: 0, stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const ev of stream) events.push(ev);
    const types = events.map((e) => e.type);
    assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    const last = types.at(-1);
    assert.ok(last === 'response.completed' || last === 'response.incomplete', String(last));
    assert.deepEqual(types.slice(-4, -1), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done']);
    assert.ok(types.slice(4, -4).every((t) => t === 'response.output_text.delta'), types.join(','));
    assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
    const deltas = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : []));
    const done = events.find((e) => e.type === 'response.output_text.done');
    assert.ok(done && done.type === 'response.output_text.done');
    assert.equal(deltas.join(''), done.text);
    const final = events.at(-1) as OpenAI.Responses.ResponseCompletedEvent;
    assert.ok(final.response.usage && final.response.usage.output_tokens >= 1);
    const created = events[0] as OpenAI.Responses.ResponseCreatedEvent;
    assert.equal(created.response.id, final.response.id);
    assert.equal(created.response.status, 'in_progress');
    // The same generation without streaming gives the same text (temperature 0).
    const plain = await client.responses.create({ model, input: 'Count.', max_output_tokens: 8, temperature: 0 });
    assert.equal(plain.output_text, done.text);
  });

  test('forced tool: a function_call whose arguments are valid for the schema; the stream carries argument deltas', async () => {
    const validate = new Ajv().compile(WEATHER);
    const r = await client.responses.create({ model, input: 'Weather in Paris?', tools, tool_choice: { type: 'function', name: 'get_weather' }, max_output_tokens: 200, temperature: 0.7 });
    const call = r.output.find((o) => o.type === 'function_call');
    assert.ok(call && call.type === 'function_call', JSON.stringify(r.output));
    assert.equal(call.name, 'get_weather');
    assert.match(call.call_id, /\S/);
    assert.ok(validate(JSON.parse(call.arguments)), JSON.stringify(validate.errors));
    assert.equal(r.status, 'completed');

    const stream = await client.responses.create({ model, input: 'Weather in Rome?', tools, tool_choice: 'required', max_output_tokens: 200, stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const ev of stream) events.push(ev);
    const added = events.find((e) => e.type === 'response.output_item.added' && e.item.type === 'function_call');
    assert.ok(added, events.map((e) => e.type).join(','));
    const argDeltas = events.flatMap((e) => (e.type === 'response.function_call_arguments.delta' ? [e.delta] : []));
    const argsDone = events.find((e) => e.type === 'response.function_call_arguments.done');
    assert.ok(argsDone && argsDone.type === 'response.function_call_arguments.done');
    assert.equal(argDeltas.join(''), argsDone.arguments);
    assert.ok(validate(JSON.parse(argsDone.arguments)));
  });

  test('tools round trip: function_call → function_call_output → an answer (items sent back, and via previous_response_id)', async () => {
    const first = await client.responses.create({ model, input: [{ role: 'user', content: 'Weather in Oslo?' }], tools, tool_choice: 'required', max_output_tokens: 200 });
    const call = first.output.find((o) => o.type === 'function_call');
    assert.ok(call && call.type === 'function_call');
    // Stateless (what Codex CLI does with store: false): the whole conversation as items.
    const second = await client.responses.create({
      model,
      input: [{ role: 'user', content: 'Weather in Oslo?' }, ...(first.output as OpenAI.Responses.ResponseInputItem[]), { type: 'function_call_output', call_id: call.call_id, output: '{"temp": 3}' }],
      tools,
      max_output_tokens: 6,
      temperature: 0,
      store: false,
    });
    assert.ok(second.output.length > 0);
    const bare = await client.responses.create({ model, input: [{ role: 'user', content: 'Weather in Oslo?' }], tools, max_output_tokens: 1, store: false });
    assert.ok(second.usage!.input_tokens > bare.usage!.input_tokens + 10, 'the call and its result are in the prompt');
    // Stateful: only the tool result, continuing the stored response.
    const third = await client.responses.create({ model, previous_response_id: first.id, input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp": 3}' }], tools, max_output_tokens: 6, temperature: 0 });
    assert.equal(third.previous_response_id, first.id);
    assert.equal(third.usage!.input_tokens, second.usage!.input_tokens, 'the stored conversation is the same prompt');
    assert.equal(third.output_text, second.output_text, 'same prompt, temperature 0: same answer');
  });

  test('text.format json_schema: output_text is valid JSON for the schema', async () => {
    const schema = { type: 'object', properties: { n: { type: 'integer' }, ok: { type: 'boolean' } }, required: ['n', 'ok'], additionalProperties: false };
    const r = await client.responses.create({ model, input: 'A number.', text: { format: { type: 'json_schema', name: 'num', schema, strict: true } }, max_output_tokens: 200 });
    assert.equal(r.status, 'completed');
    const value: unknown = JSON.parse(r.output_text);
    assert.ok(new Ajv().compile(schema)(value), r.output_text);
    // json_object has no bounds: a random model may write one long string until the limit.
    const o = await client.responses.create({ model, input: 'An object.', text: { format: { type: 'json_object' } }, max_output_tokens: 60 });
    assert.match(o.output_text, /^\s*\{/);
    if (o.status === 'completed') assert.equal(typeof JSON.parse(o.output_text), 'object');
  });

  test('a repeated prompt reports the prefix-cache hit in input_tokens_details.cached_tokens', async () => {
    const input = `Summarize: ${'the quick brown fox jumps over the lazy dog. '.repeat(20)}`;
    await client.responses.create({ model, input, max_output_tokens: 1, store: false });
    const again = await client.responses.create({ model, input, max_output_tokens: 1, store: false });
    assert.ok(again.usage!.input_tokens_details.cached_tokens > 100, JSON.stringify(again.usage));
  });
});

describe('stored responses', { timeout: 300_000 }, () => {
  test('retrieve returns the stored response; store: false is not kept; delete removes it', async () => {
    const r = await client.responses.create({ model, input: 'Hi', max_output_tokens: 3 });
    const got = await client.responses.retrieve(r.id);
    assert.equal(got.id, r.id);
    assert.deepEqual(got.output, r.output);
    assert.equal(got.output_text, r.output_text);
    const gone = await client.responses.create({ model, input: 'Hi', max_output_tokens: 3, store: false });
    await assert.rejects(client.responses.retrieve(gone.id), (e: unknown) => e instanceof OpenAI.NotFoundError);
    await client.responses.delete(r.id);
    await assert.rejects(client.responses.retrieve(r.id), (e: unknown) => e instanceof OpenAI.NotFoundError);
  });

  test('an unknown previous_response_id is a clear 400, never a silent fresh start', async () => {
    await assert.rejects(
      client.responses.create({ model, input: 'x', previous_response_id: 'resp_doesnotexist', max_output_tokens: 2 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === 'previous_response_id' && /previous_response_id|not found/i.test(e.message),
    );
  });
});

describe('errors', { timeout: 120_000 }, () => {
  test('bad values are 400s naming the Responses field; unknown models 404; nothing leaks', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ input: 'x', temperature: 9 }, 'temperature'],
      [{ input: 'x', max_output_tokens: -1 }, 'max_output_tokens'],
      [{ input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0].type'],
      [{ input: 'x', text: { format: { type: 'json_schema', name: 'a', schema: { type: 'string', not: {} } } } }, 'text.format'],
      [{ input: 'x', tools, tool_choice: { type: 'function', name: 'nope' } }, 'tool_choice'],
    ];
    for (const [body, param] of cases) {
      await assert.rejects(
        client.responses.create({ model, ...body } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming),
        (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === param,
        param,
      );
    }
    await assert.rejects(client.responses.create({ model: 'no-such-model', input: 'x' }), (e: unknown) => e instanceof OpenAI.NotFoundError);
    const raw = await postJson(stack.port, '/v1/responses', { model, input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'data:,' }] }] });
    assert.equal(raw.status, 400);
    assert.doesNotMatch(raw.body, LEAK_RE);
    assert.equal(JSON.parse(raw.body).error.code, 'unsupported_parameter');
  });

  test('a prompt over the context is a 400 context_length_exceeded, also when streaming', async () => {
    const input = 'word '.repeat(stack.modelInfo.contextLength + 10);
    for (const stream of [false, true]) {
      const r = await postJson(stack.port, '/v1/responses', { model, input, stream });
      assert.equal(r.status, 400, r.body.slice(0, 200));
      assert.equal(JSON.parse(r.body).error.code, 'context_length_exceeded');
    }
  });
});
