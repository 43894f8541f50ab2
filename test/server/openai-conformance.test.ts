// Small OpenAI conformance points found with the official OpenAPI spec, through the real server and
// the official client: `models.retrieve(id)` and `refusal: null` on every non-stream chat message.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startStack, type TestStack } from './helpers.ts';

let stack: TestStack;
let client: OpenAI;
before(async () => {
  stack = await startStack();
  client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
});
after(async () => {
  await stack?.close();
});

test('models.retrieve returns the listed model; an unknown id is a 404', async () => {
  const m = await client.models.retrieve(stack.modelInfo.id);
  assert.equal(m.id, stack.modelInfo.id);
  assert.equal(m.object, 'model');
  const listed = (await client.models.list()).data.find((x) => x.id === stack.modelInfo.id);
  assert.deepEqual(m, listed);
  await assert.rejects(client.models.retrieve('nope'), (e: unknown) => e instanceof OpenAI.NotFoundError);
});

test('a non-stream chat message carries refusal: null', async () => {
  const r = await client.chat.completions.create({ model: stack.modelInfo.id, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
  assert.ok('refusal' in r.choices[0]!.message);
  assert.equal(r.choices[0]!.message.refusal, null);
});
