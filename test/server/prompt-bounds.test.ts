// Requests that cannot fit the context are refused BEFORE the prompt is rendered and tokenized on
// the event loop (issue #11 item 1): a 7.8 MB message, 100,000 messages, 128 tools × 600 properties
// and 2,048 large embedding inputs, all under the body limit, against a real server on a real tiny
// model. Each gets a clear 400 with a stable code and the server keeps answering /health and a
// normal chat. (How long /health waits meanwhile is measured in the bench: `--only health-under-load`.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, postJson, rawRequest, chat, type TestStack } from './helpers.ts';
import { checkPromptBounds, textSize, MAX_CHARS_PER_TOKEN } from '../../main/server/prompt-bounds.ts';

let stack: TestStack;
before(async () => {
  stack = await startStack({});
}, { timeout: 240_000 });
after(async () => {
  await stack?.close();
});

const error = (r: { status: number; body: string }) => (JSON.parse(r.body) as { error: { code: string; param: string; message: string } }).error;

describe('maximal requests are refused before rendering', { timeout: 300_000 }, () => {
  test('a 7.8 MB message', async () => {
    const r = await postJson(stack.port, '/v1/chat/completions', chat('a'.repeat(7_800_000), { max_tokens: 2 }));
    assert.equal(r.status, 400, r.body.slice(0, 300));
    assert.equal(error(r).code, 'context_length_exceeded');
    assert.equal(error(r).param, 'messages');
    assert.match(error(r).message, /cannot fit/);
  });

  test('100,000 messages', async () => {
    const messages = Array.from({ length: 100_000 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'hi' }));
    const r = await postJson(stack.port, '/v1/chat/completions', { messages, max_tokens: 2 });
    assert.equal(r.status, 400, r.body.slice(0, 300));
    assert.equal(error(r).code, 'context_length_exceeded');
    assert.match(error(r).message, /100000 messages/);
  });

  test('128 tools × 600 properties', async () => {
    const properties = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`property_number_${i}_with_a_long_name`, { type: 'string', description: 'a field' }]));
    const tools = Array.from({ length: 128 }, (_, i) => ({ type: 'function', function: { name: `tool_${i}`, description: 'a tool', parameters: { type: 'object', properties } } }));
    const r = await postJson(stack.port, '/v1/chat/completions', { ...chat('hi', { max_tokens: 2 }), tools });
    assert.equal(r.status, 400, r.body.slice(0, 300));
    assert.equal(error(r).code, 'context_length_exceeded');
    assert.equal(error(r).param, 'tools');
  });

  test('/v1/completions with a 7.8 MB prompt, and 2,048 large embedding inputs', async () => {
    const c = await postJson(stack.port, '/v1/completions', { prompt: 'b'.repeat(7_800_000), max_tokens: 2 });
    assert.equal(c.status, 400);
    assert.equal(error(c).code, 'context_length_exceeded');
    const e = await postJson(stack.port, '/v1/embeddings', { input: Array.from({ length: 2048 }, () => 'c'.repeat(3500)) });
    assert.equal(e.status, 400, e.body.slice(0, 300));
    assert.equal(error(e).param, 'input');
  });

  test('the server still answers: /health and a normal chat', async () => {
    assert.equal((await rawRequest(stack.port, { path: '/health' })).status, 200);
    const ok = await postJson(stack.port, '/v1/chat/completions', chat('hello', { max_tokens: 2 }));
    assert.equal(ok.status, 200, ok.body);
  });
});

test('the bounds only refuse what cannot fit (a prompt at the limit passes, one past it does not)', () => {
  const ctx = 100;
  const base = { kind: 'chat', tools: null } as const;
  const at = { ...base, messages: [{ role: 'user', content: 'x'.repeat(ctx * MAX_CHARS_PER_TOKEN - 'role'.length - 'user'.length - 'content'.length) }] };
  assert.doesNotThrow(() => checkPromptBounds(at as never, ctx));
  const past = { ...base, messages: [{ role: 'user', content: 'x'.repeat(ctx * MAX_CHARS_PER_TOKEN) }] };
  assert.throws(() => checkPromptBounds(past as never, ctx), /cannot fit/);
  assert.doesNotThrow(() => checkPromptBounds({ ...base, messages: Array.from({ length: ctx }, () => ({ role: 'user', content: 'a' })) } as never, ctx));
  assert.throws(() => checkPromptBounds({ ...base, messages: Array.from({ length: ctx + 1 }, () => ({ role: 'user', content: 'a' })) } as never, ctx), /messages/);
  // deep input cannot overflow the stack
  let deep: unknown = 'x';
  for (let i = 0; i < 200_000; i++) deep = [deep];
  assert.equal(textSize(deep, 10), 1);
});
