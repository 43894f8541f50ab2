// The Responses API translation on its own (no engine): request → internal chat request, internal
// events → stream events / final Response, and the bounded response store. The end-to-end tests
// with the official client are in responses-api.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from '../../main/common/errors.ts';
import { validateResponsesRequest } from '../../main/server/responses/request.ts';
import { ResponsesEncoder, outputText, sseFrame, type ResponsesFrame } from '../../main/server/responses/output.ts';
import { ResponseStore, conversationAfter } from '../../main/server/responses/store.ts';
import type { OutputDone } from '../../main/server/output-events.ts';

const opts = { maxStopLength: 256 };
const v = (body: Record<string, unknown>, extra: Partial<Parameters<typeof validateResponsesRequest>[1]> = {}) => validateResponsesRequest(body, { ...opts, ...extra });

function rejects(body: Record<string, unknown>, param: string, code?: string): ApiError {
  try {
    v(body);
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.status, 400);
    assert.equal(err.param, param, err.message);
    if (code) assert.equal(err.code, code);
    return err;
  }
  assert.fail(`expected a 400 on ${param}`);
}

describe('Responses request → internal chat request', () => {
  test('string input + instructions become system + user messages; sampling and limits are carried', () => {
    const r = v({ model: 'm', input: 'hi', instructions: 'be brief', max_output_tokens: 7, temperature: 0, top_p: 0.5 });
    assert.deepEqual(r.chat.messages, [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hi' },
    ]);
    assert.equal(r.chat.maxTokens, 7);
    assert.equal(r.chat.sampling.temperature, 0);
    assert.equal(r.chat.sampling.topP, 0.5);
    assert.equal(r.chat.model, 'm');
    assert.equal(r.store, true, 'store defaults to true, as OpenAI');
    assert.deepEqual(r.inputMessages, [{ role: 'user', content: 'hi' }], 'instructions are not part of what is stored');
  });

  test('function_call items group into one assistant turn; function_call_output becomes a tool message; reasoning rides on the turn', () => {
    const r = v({
      input: [
        { role: 'user', content: [{ type: 'input_text', text: 'weather?' }] },
        { type: 'reasoning', id: 'rs_1', summary: [], content: [{ type: 'reasoning_text', text: 'need a tool' }] },
        { type: 'function_call', call_id: 'c1', name: 'get', arguments: '{"city":"Paris"}' },
        { type: 'function_call', call_id: 'c2', name: 'get', arguments: '{"city":"Rome"}' },
        { type: 'function_call_output', call_id: 'c1', output: 'sunny' },
        { type: 'function_call_output', call_id: 'c2', output: [{ type: 'input_text', text: 'rain' }] },
      ],
    });
    assert.deepEqual(r.chat.messages, [
      { role: 'user', content: 'weather?' },
      {
        role: 'assistant',
        content: null,
        reasoning_content: 'need a tool',
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'get', arguments: '{"city":"Paris"}' } },
          { id: 'c2', type: 'function', function: { name: 'get', arguments: '{"city":"Rome"}' } },
        ],
      },
      { role: 'tool', content: 'sunny', tool_call_id: 'c1' },
      { role: 'tool', content: 'rain', tool_call_id: 'c2' },
    ]);
  });

  test('function tools, a forced tool_choice and text.format json_schema reach the constrained decoder', () => {
    const params = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };
    const r = v({ input: 'x', tools: [{ type: 'function', name: 'get', parameters: params, strict: true }], tool_choice: { type: 'function', name: 'get' } });
    assert.deepEqual(r.chat.tools, [{ type: 'function', function: { name: 'get', parameters: params } }]);
    assert.deepEqual(r.chat.toolChoice, { name: 'get' });
    assert.deepEqual(r.echo.tool_choice, { type: 'function', name: 'get' });
    const schema = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };
    const j = v({ input: 'x', text: { format: { type: 'json_schema', name: 'n', schema, strict: true } } });
    assert.deepEqual(j.chat.constraint, { schema });
    assert.deepEqual(v({ input: 'x', text: { format: { type: 'json_object' } } }).chat.constraint, { schema: null });
  });

  test('reasoning.effort none renders the non-thinking prompt', () => {
    assert.deepEqual(v({ input: 'x', reasoning: { effort: 'none' } }).chat.templateKwargs, { enable_thinking: false });
    assert.equal(v({ input: 'x', reasoning: { effort: 'high' } }).chat.templateKwargs, null);
  });

  test('history from previous_response_id comes between instructions and the new input', () => {
    const r = v({ input: 'and then?', instructions: 'sys', previous_response_id: 'resp_1' }, { history: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] });
    assert.deepEqual(r.chat.messages.map((m) => m.content), ['sys', 'a', 'b', 'and then?']);
    assert.equal(r.previousResponseId, 'resp_1');
  });

  test('errors name the Responses field, never the chat field it maps to', () => {
    rejects({ input: 'x', max_output_tokens: 0 }, 'max_output_tokens');
    rejects({ input: 'x', temperature: 3 }, 'temperature');
    // A schema no value satisfies is refused by the constrained decoder's compiler.
    const e = rejects({ input: 'x', text: { format: { type: 'json_schema', name: 'a', schema: { type: 'string', not: {} } } } }, 'text.format');
    assert.match(e.message, /'not'/);
    assert.doesNotMatch(e.message, /response_format/);
    rejects({ input: 'x', tools: [{ type: 'function', name: 'bad name!' }] }, 'tools[0].name');
    rejects({ input: 'x', tools: [{ type: 'function', name: 'f' }], tool_choice: { type: 'function', name: 'g' } }, 'tool_choice');
    rejects({ input: [{ role: 'robot', content: 'x' }] }, 'input[0].role');
    rejects({}, 'input', 'missing_required_parameter');
  });

  test('what we cannot do is refused, not ignored', () => {
    rejects({ input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0].type', 'unsupported_parameter');
    rejects({ input: 'x', background: true }, 'background', 'unsupported_parameter');
    rejects({ input: 'x', truncation: 'auto' }, 'truncation', 'unsupported_parameter');
    rejects({ input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] }, 'input[0].content[0].type', 'unsupported_parameter');
    rejects({ input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input[0].type', 'unsupported_parameter');
    rejects({ input: 'x', include: ['message.output_text.logprobs'] }, 'include', 'unsupported_parameter');
    // What Codex CLI sends with store: false is accepted.
    assert.equal(v({ input: 'x', store: false, include: ['reasoning.encrypted_content'] }).store, false);
  });
});

const done = (over: Partial<OutputDone> = {}): OutputDone => ({ finishReason: 'stop', promptTokens: 10, cachedTokens: 4, completionTokens: 5, prefillMs: 1, decodeMs: 2, totalMs: 3, ...over });
const base = () => ({ id: 'resp_x', created_at: 1, model: 'm', instructions: null, previous_response_id: null, store: true, echo: { tools: [], tool_choice: 'auto' } });

function run(events: Parameters<ResponsesEncoder['push']>[0][], d: OutputDone) {
  const enc = new ResponsesEncoder(base());
  const frames: ResponsesFrame[] = [...enc.start()];
  for (const e of events) frames.push(...enc.push(e));
  frames.push(...enc.finish(d));
  return { frames, types: frames.map((f) => f.event), response: enc.response };
}

describe('internal events → Responses stream and body', () => {
  test('a text answer: the documented event order, consecutive sequence numbers, usage with cached tokens', () => {
    const { frames, types, response } = run([{ type: 'content', text: 'Hel' }, { type: 'content', text: 'lo' }], done());
    assert.deepEqual(types, [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    assert.deepEqual(frames.map((f) => f.data.sequence_number), frames.map((_, i) => i));
    for (const f of frames) assert.equal(f.data.type, f.event);
    assert.equal(frames[6]!.data.text, 'Hello');
    assert.equal(outputText(response), 'Hello');
    assert.equal(response.status, 'completed');
    assert.deepEqual(response.usage, { input_tokens: 10, input_tokens_details: { cached_tokens: 4 }, output_tokens: 5, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 15 });
    assert.deepEqual(frames.at(-1)!.data.response, response, 'response.completed carries the final Response');
    assert.equal((frames[0]!.data.response as { status: string }).status, 'in_progress');
  });

  test('reasoning, then text, then two calls: one output item each, in order', () => {
    const { types, response } = run(
      [
        { type: 'reasoning', text: 'think' },
        { type: 'content', text: 'ok ' },
        { type: 'tool_call', index: 0, id: 'call_a', name: 'f' },
        { type: 'tool_call_arguments', index: 0, argumentsDelta: '{"a":' },
        { type: 'tool_call_arguments', index: 0, argumentsDelta: '1}' },
        { type: 'content', text: '\n' },
        { type: 'tool_call', index: 1, id: 'call_b', name: 'g' },
        { type: 'tool_call_arguments', index: 1, argumentsDelta: '{}' },
      ],
      done({ finishReason: 'tool_calls' }),
    );
    const out = response.output as Record<string, unknown>[];
    assert.deepEqual(out.map((o) => o.type), ['reasoning', 'message', 'function_call', 'function_call'], 'whitespace between calls is no message');
    assert.deepEqual(out[0]!.content, [{ type: 'reasoning_text', text: 'think' }]);
    assert.equal(out[2]!.arguments, '{"a":1}');
    assert.equal(out[2]!.call_id, 'call_a');
    assert.match(out[2]!.id as string, /^fc_/);
    assert.equal(out[3]!.name, 'g');
    assert.ok(types.includes('response.reasoning_text.delta'));
    assert.equal(types.filter((t) => t === 'response.function_call_arguments.done').length, 2);
    assert.equal(types.filter((t) => t === 'response.output_item.done').length, 4);
  });

  test('cut by max_output_tokens: response.incomplete with the reason, the item incomplete', () => {
    const { types, response } = run([{ type: 'content', text: 'abc' }], done({ finishReason: 'length' }));
    assert.equal(types.at(-1), 'response.incomplete');
    assert.equal(response.status, 'incomplete');
    assert.deepEqual(response.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal((response.output as { status: string }[])[0]!.status, 'incomplete');
  });

  test('a failure mid-stream: an error event, then response.failed', () => {
    const enc = new ResponsesEncoder(base());
    enc.start();
    enc.push({ type: 'content', text: 'a' });
    const frames = enc.fail(new ApiError('engine_crashed', 'The engine stopped'));
    assert.deepEqual(frames.map((f) => f.event).slice(-2), ['error', 'response.failed']);
    assert.equal(enc.response.status, 'failed');
    assert.deepEqual(enc.response.error, { code: 'server_error', message: 'The engine stopped' });
  });

  test('frames are written with an event line and a data line', () => {
    assert.equal(sseFrame({ event: 'response.created', data: { type: 'response.created' } }), 'event: response.created\ndata: {"type":"response.created"}\n\n');
  });
});

describe('response store', () => {
  test('bounded by count (least recently used go first)', () => {
    const s = new ResponseStore({ maxEntries: 2, maxBytes: 1 << 20, ttlMs: 60_000 });
    s.set('a', { response: { id: 'a' }, messages: [] });
    s.set('b', { response: { id: 'b' }, messages: [] });
    s.get('a');
    s.set('c', { response: { id: 'c' }, messages: [] });
    assert.ok(s.get('a'));
    assert.equal(s.get('b'), undefined);
    assert.ok(s.get('c'));
  });

  test('bounded by bytes: an entry over the whole budget is not kept', () => {
    const s = new ResponseStore({ maxEntries: 10, maxBytes: 1000, ttlMs: 60_000 });
    s.set('big', { response: { text: 'x'.repeat(2000) }, messages: [] });
    assert.equal(s.get('big'), undefined);
  });

  test('the conversation after a response appends its output as one assistant turn', () => {
    const msgs = conversationAfter([{ role: 'user', content: 'q' }], {
      output: [
        { type: 'reasoning', content: [{ type: 'reasoning_text', text: 'r' }] },
        { type: 'message', content: [{ type: 'output_text', text: 'a' }] },
        { type: 'function_call', call_id: 'c', name: 'f', arguments: '{}' },
      ],
    });
    assert.deepEqual(msgs, [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'a', reasoning_content: 'r', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] },
    ]);
  });
});
