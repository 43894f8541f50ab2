// Issue 13's keywords through each non-OpenAI-chat front door, with each API's official client,
// against the real server and engine on a tiny RANDOM-weight model (real Qwen3 tokenizer): the
// Anthropic Messages API's forced tool call (`tool_choice` tool/any, the tool's `input_schema`),
// the Responses API's `text.format` json_schema, and Ollama's `format` schema. One schema carries
// integer/decimal bounds (zod's ±2^53 too), multipleOf, email/uuid/date formats, a regex, a record
// (propertyNames), a tuple (prefixItems), a discriminated union (oneOf), a nullable union and
// `contains` with min/maxContains. Unconstrained, this model writes gibberish: every document
// that validates below does so because the recognizer enforced those keywords. Several requests
// per door (Ollama with explicit seeds; the other two APIs have no seed, so each request samples
// anew at temperature 1); each answer is checked with ajv (2020-12, strict, formats on).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { startStack, type TestStack } from './helpers.ts';

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

let stack: TestStack;
let model: string;

before(async () => {
  stack = await startStack();
  model = stack.modelInfo.id;
});
after(async () => {
  await stack?.close();
});

const digit = { type: 'integer', minimum: -9, maximum: 9 };
/** Every string is bounded (maxLength, a fixed-length format or pattern) so a random model's document ends. */
const SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 },
    age: { type: 'integer', minimum: 18, maximum: 120 },
    price: { type: 'number', exclusiveMinimum: 0, maximum: 1000 },
    bucket: { type: 'integer', multipleOf: 5, minimum: 0, maximum: 50 },
    email: { type: 'string', format: 'email', maxLength: 24, pattern: "^(?:[A-Za-z0-9_'+\\-]+\\.)*[A-Za-z0-9_'+\\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$" },
    code: { type: 'string', pattern: '^[A-Z]{2}-\\d{3}$' },
    ref: { type: 'string', format: 'uuid' },
    day: { type: 'string', format: 'date' },
    scores: { type: 'object', propertyNames: { pattern: '^[a-z]{1,4}$' }, additionalProperties: { type: 'integer', minimum: 0, maximum: 9 }, maxProperties: 3 },
    point: { type: 'array', prefixItems: [digit, digit], items: false, minItems: 2 },
    shape: {
      oneOf: [
        { type: 'object', properties: { kind: { const: 'circle' }, r: { type: 'number', exclusiveMinimum: 0, maximum: 10 } }, required: ['kind', 'r'], additionalProperties: false },
        { type: 'object', properties: { kind: { const: 'rect' }, w: { type: 'integer', minimum: 1, maximum: 9 } }, required: ['kind', 'w'], additionalProperties: false },
      ],
    },
    nick: { anyOf: [{ type: 'string', maxLength: 8 }, { type: 'null' }] },
    tags: { type: 'array', items: { type: 'string', maxLength: 6 }, contains: { const: 'urgent' }, minContains: 1, maxContains: 1, maxItems: 3 },
  },
  required: ['id', 'age', 'price', 'bucket', 'email', 'code', 'ref', 'day', 'scores', 'point', 'shape', 'nick', 'tags'],
  additionalProperties: false,
} as const;

const ajv = addFormats(new Ajv2020({ strict: true, strictTuples: false, logger: false }));
const validate = ajv.compile(SCHEMA);
const MAX = 1500;
const RUNS = 3;

function check(value: unknown, raw: string): void {
  assert.ok(validate(value), `${ajv.errorsText(validate.errors)}: ${raw}`);
  // The keywords did something a random model would not do by chance.
  const v = value as { tags: string[]; bucket: number; code: string };
  assert.equal(v.tags.filter((t) => t === 'urgent').length, 1);
  assert.ok(v.bucket % 5 === 0, String(v.bucket)); // (-0 is a valid multiple too)
  assert.match(v.code, /^[A-Z]{2}-\d{3}$/);
}

describe('issue 13 keywords through every front door (official clients, ajv-valid on a random model)', { timeout: 900_000 }, () => {
  test('Anthropic Messages: forced tool_use (tool_choice tool, then any) → input valid for input_schema', async () => {
    const client = new Anthropic({ baseURL: stack.url, apiKey: 'unused', maxRetries: 0, timeout: 300_000 });
    const tools: Anthropic.Tool[] = [{ name: 'record_person', description: 'Store a person', input_schema: SCHEMA as unknown as Anthropic.Tool.InputSchema }];
    for (let i = 0; i < RUNS; i++) {
      const msg = await client.messages.create({
        model,
        max_tokens: MAX,
        tools,
        tool_choice: i === 0 ? { type: 'any' } : { type: 'tool', name: 'record_person' },
        messages: [{ role: 'user', content: `Record person #${i}.` }],
      });
      assert.equal(msg.stop_reason, 'tool_use', JSON.stringify(msg.content));
      const use = msg.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use');
      assert.ok(use, JSON.stringify(msg.content));
      assert.equal(use.name, 'record_person');
      check(use.input, JSON.stringify(use.input));
    }
  });

  test('Responses API: text.format json_schema (strict) → output_text valid', async () => {
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 300_000 });
    for (let i = 0; i < RUNS; i++) {
      const r = await client.responses.create({
        model,
        input: `Person #${i} as JSON.`,
        text: { format: { type: 'json_schema', name: 'person', schema: SCHEMA as unknown as Record<string, unknown>, strict: true } },
        max_output_tokens: MAX,
        temperature: 1,
        store: false,
      });
      assert.equal(r.status, 'completed', r.output_text);
      check(JSON.parse(r.output_text), r.output_text);
    }
  });

  test('Ollama: chat format schema, several seeds → message.content valid', async () => {
    const ollama = new Ollama({ host: stack.url });
    for (const seed of [11, 12, 13]) {
      const r = await ollama.chat({ model, messages: [{ role: 'user', content: 'A person as JSON.' }], format: SCHEMA as unknown as object, options: { num_predict: MAX, temperature: 1, seed } });
      assert.equal(r.done_reason, 'stop', r.message.content);
      check(JSON.parse(r.message.content), r.message.content);
    }
    // /api/generate takes the same format.
    const g = await ollama.generate({ model, prompt: 'A person as JSON.', format: SCHEMA as unknown as object, options: { num_predict: MAX, seed: 14 } });
    const out = g.response ?? '';
    assert.equal(g.done_reason, 'stop', out);
    check(JSON.parse(out), out);
  });
});
